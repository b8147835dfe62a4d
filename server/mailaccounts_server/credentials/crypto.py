"""AES-GCM encryption at rest for mailbox passwords, with a rotatable keyring."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_LOG = logging.getLogger(__name__)

KEY_SIZE = 32
"""Raw key length in bytes (AES-256)."""

KEYS_ENV_VAR = "MAILACCOUNTS_CREDENTIAL_KEYS"

# Token layout (documented for operators and for whoever writes a migration tool):
#
#   token   = "v1." + base64url_nopad(key_id || nonce || ciphertext_and_tag)
#   key_id  = SHA-256("mailaccounts-credential-key-id\0" || key)[:8]
#   nonce   = 12 random bytes, fresh for every encryption
#   AAD     = "mailaccounts-credential-v1\0" || caller_aad (UTF-8)
#
# The version prefix stays outside the base64 so that a future format can be recognised
# without decoding. The key id is a domain-separated hash so that it never equals a hash of the
# key that might be computed elsewhere. The version is also folded into the AAD so a v1 body
# can never be reinterpreted under another version's rules.
_VERSION_PREFIX = "v1."
_KEY_ID_SIZE = 8
_NONCE_SIZE = 12
_TAG_SIZE = 16
_KEY_ID_DOMAIN = b"mailaccounts-credential-key-id\x00"
_AAD_DOMAIN = b"mailaccounts-credential-v1\x00"
# Base64 characters that cover the key id (12 characters encode 9 bytes: the id and one nonce
# byte), so a token's first TOKEN_KEY_ID_PREFIX characters name its key.
_KEY_ID_CHARS = 12
TOKEN_KEY_ID_PREFIX = len(_VERSION_PREFIX) + _KEY_ID_CHARS


class CredentialDecryptError(Exception):
    """A stored credential cannot be decrypted (unknown key, wrong row, tampering, garbage)."""


class ConfigurationError(ValueError):
    """The credential key configuration is missing or invalid."""


def key_id_for(key: bytes) -> bytes:
    """Return the 8-byte identifier that tokens carry to name the key that sealed them."""
    return hashlib.sha256(_KEY_ID_DOMAIN + key).digest()[:_KEY_ID_SIZE]


def _b64url_decode(text: str) -> bytes:
    """Decode base64url text with or without padding; raise binascii.Error on bad input."""
    stripped = text.strip().rstrip("=")
    padded = stripped + "=" * (-len(stripped) % 4)
    # validate=True rejects stray characters that the lenient decoder would silently drop.
    return base64.b64decode(padded, altchars=b"-_", validate=True)


class CredentialCipher:
    """Keyring that encrypts with its first key and decrypts with whichever key a token names."""

    def __init__(self, keys: Sequence[bytes], *, source: str = "") -> None:
        if not keys:
            raise ValueError("a credential keyring needs at least one key")
        self._ciphers: dict[bytes, AESGCM] = {}
        self._order: list[bytes] = []
        self._raw_keys: list[bytes] = []
        for index, key in enumerate(keys, start=1):
            if not isinstance(key, bytes | bytearray) or len(key) != KEY_SIZE:
                raise ValueError(f"credential key #{index} must be {KEY_SIZE} raw bytes")
            kid = key_id_for(bytes(key))
            if kid in self._ciphers:
                # The same key listed twice is harmless; keep the first position.
                continue
            self._ciphers[kid] = AESGCM(bytes(key))
            self._order.append(kid)
            self._raw_keys.append(bytes(key))
        self._primary = self._order[0]
        self._source = source

    def __repr__(self) -> str:
        # Only identifiers: the repr may end up in logs or tracebacks.
        return f"CredentialCipher(key_ids={self.key_ids!r})"

    @property
    def primary_key_id(self) -> str:
        """Hex identifier of the key that new tokens are sealed with."""
        return self._primary.hex()

    @property
    def source(self) -> str:
        """Where the keys came from (the variable or the key file), for messages."""
        return self._source

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Hex identifiers of all keys in the ring, primary first."""
        return tuple(kid.hex() for kid in self._order)

    def derive_secrets(self, purpose: str) -> list[bytes]:
        """Per-purpose secrets (HMAC of each key), primary first: other features that must
        agree across replicas (page tokens, request hashes) sign with the first and accept any,
        so they survive a key rotation."""
        label = b"mailaccounts-derived-secret\0" + purpose.encode()
        return [hmac.new(key, label, hashlib.sha256).digest() for key in self._raw_keys]

    def encrypt(self, plaintext: str, *, aad: str) -> str:
        """Seal ``plaintext`` with the primary key, bound to ``aad`` (e.g. tenant/user/id)."""
        nonce = secrets.token_bytes(_NONCE_SIZE)
        sealed = self._ciphers[self._primary].encrypt(
            nonce, plaintext.encode("utf-8"), _aad_bytes(aad)
        )
        body = base64.urlsafe_b64encode(self._primary + nonce + sealed).rstrip(b"=")
        return _VERSION_PREFIX + body.decode("ascii")

    def decrypt(self, token: str, *, aad: str) -> str:
        """Open a token; raise CredentialDecryptError unless key, AAD and contents all match."""
        kid, nonce, sealed = _split_token(token)
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise CredentialDecryptError(
                f"credential was encrypted with key id {kid.hex()}, which is not configured"
            )
        try:
            plaintext = cipher.decrypt(nonce, sealed, _aad_bytes(aad))
        except InvalidTag:
            raise CredentialDecryptError(
                "credential failed authentication (tampered, or stored under another row)"
            ) from None
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            # Cannot happen for tokens we produced; treat as corruption, never echo the bytes.
            raise CredentialDecryptError("credential plaintext is not valid UTF-8") from None

    def is_current(self, token: str) -> bool:
        """True when the token is sealed with the primary key (no rotation needed)."""
        kid, _, _ = _split_token(token)
        return kid == self._primary


def _aad_bytes(aad: str) -> bytes:
    return _AAD_DOMAIN + aad.encode("utf-8")


def _split_token(token: str) -> tuple[bytes, bytes, bytes]:
    """Return (key_id, nonce, ciphertext_and_tag) or raise CredentialDecryptError."""
    if not isinstance(token, str) or not token.startswith(_VERSION_PREFIX):
        raise CredentialDecryptError("credential token has an unknown format or version")
    body = token[len(_VERSION_PREFIX) :]
    try:
        raw = _b64url_decode(body)
    except (binascii.Error, ValueError):
        raise CredentialDecryptError("credential token is not valid base64url") from None
    # Accept only the exact encoding we emit, so one ciphertext has exactly one token text
    # (base64 otherwise tolerates variants such as non-zero trailing bits or padding).
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != body:
        raise CredentialDecryptError("credential token is not in canonical form")
    if len(raw) < _KEY_ID_SIZE + _NONCE_SIZE + _TAG_SIZE:
        raise CredentialDecryptError("credential token is truncated")
    kid = raw[:_KEY_ID_SIZE]
    nonce = raw[_KEY_ID_SIZE : _KEY_ID_SIZE + _NONCE_SIZE]
    return kid, nonce, raw[_KEY_ID_SIZE + _NONCE_SIZE :]


def token_key_id(token: str) -> str:
    """Hex id of the key that sealed a token; its first TOKEN_KEY_ID_PREFIX characters suffice.

    Raises CredentialDecryptError when they are not those of a token."""
    if not isinstance(token, str) or not token.startswith(_VERSION_PREFIX):
        raise CredentialDecryptError("credential token has an unknown format or version")
    head = token[len(_VERSION_PREFIX) : TOKEN_KEY_ID_PREFIX]
    if len(head) < _KEY_ID_CHARS:
        raise CredentialDecryptError("credential token is truncated")
    try:
        return _b64url_decode(head)[:_KEY_ID_SIZE].hex()
    except (binascii.Error, ValueError):
        raise CredentialDecryptError("credential token is not valid base64url") from None


def generate_key() -> str:
    """Return a fresh random 32-byte key as base64url text (suitable for the env variable)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_SIZE)).decode("ascii")


def parse_keys(spec: str) -> list[bytes]:
    """Parse a comma-separated list of base64 (url-safe or standard) keys, primary first."""
    return _parse_key_items(spec.split(","), source="credential key")


def _parse_key_items(items: Iterable[str], *, source: str) -> list[bytes]:
    keys: list[bytes] = []
    position = 0
    for item in items:
        text = item.strip()
        if not text:
            # Tolerate "a,b," and blank lines: they carry no key, so nothing can be misread.
            continue
        position += 1
        # Error messages name the position only: the offending text may be a real key.
        try:
            key = _b64url_decode(text.replace("+", "-").replace("/", "_"))
        except (binascii.Error, ValueError):
            raise ValueError(f"{source} #{position} is not valid base64") from None
        if len(key) != KEY_SIZE:
            raise ValueError(
                f"{source} #{position} decodes to {len(key)} bytes; expected {KEY_SIZE}"
            )
        keys.append(key)
    if not keys:
        raise ValueError(f"no {source} given")
    return keys


def _read_key_file(path: Path, *, production: bool = False) -> list[bytes]:
    mode = stat.S_IMODE(path.stat().st_mode)
    if production and mode & 0o004:
        # Every local account could copy the keys and decrypt every stored password.
        raise ConfigurationError(
            f"production mode: credential key file {path} is readable by every user "
            f"(mode {mode:04o}); restrict it to the server's user: chmod 600 {path}"
        )
    if mode & 0o077:
        _LOG.warning(
            "credential key file %s has mode %04o; it should be 0600 (readable by owner only)",
            path,
            mode,
        )
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise ConfigurationError(f"credential key file {path} is not ASCII text") from None
    items: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        items.extend(line.split(","))
    try:
        return _parse_key_items(items, source=f"key in {path}")
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


def load_or_create_key_file(path: Path) -> list[bytes]:
    """Read keys from ``path`` (first = primary), creating it with one new key if missing."""
    if path.exists():
        return _read_key_file(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Write the key into a private temporary file and hard-link it into place: the key file
    # then appears complete or not at all, and a concurrent starter that lost the race reads
    # the winner's key instead of overwriting it (which would orphan encrypted rows).
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(
                "# mailaccounts credential keys, one per line, first = primary. Keep secret;\n"
                "# losing this file makes every stored mailbox password unreadable.\n"
            )
            handle.write(generate_key() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            _LOG.info("credential key file %s was created concurrently; using it", path)
            return _read_key_file(path)
    finally:
        tmp.unlink(missing_ok=True)
    _LOG.warning(
        "created a new credential key file at %s; back it up, and set %s in production",
        path,
        KEYS_ENV_VAR,
    )
    return _read_key_file(path)


def build_cipher(
    *, keys_spec: str | None, key_file: Path | None, production: bool
) -> CredentialCipher:
    """Build the keyring from the env spec, else from the key file.

    Outside production a missing key file is created with a new key; in production the key
    file must exist (a new key could not open what other replicas stored) and must not be
    readable by every user."""
    if keys_spec is not None and keys_spec.strip():
        try:
            keys = parse_keys(keys_spec)
        except ValueError as exc:
            raise ConfigurationError(f"{KEYS_ENV_VAR}: {exc}") from None
        source = KEYS_ENV_VAR
    elif production and (key_file is None or not key_file.exists()):
        missing = f" (key file {key_file} does not exist)" if key_file is not None else ""
        raise ConfigurationError(
            f"production mode: refuse to start without {KEYS_ENV_VAR} "
            "(comma-separated base64 32-byte keys, primary first) or an existing key file"
            f"{missing}; production never creates a key"
        )
    elif key_file is None:
        raise ConfigurationError(f"set {KEYS_ENV_VAR} or configure a credential key file")
    else:
        keys = (
            _read_key_file(key_file, production=True)
            if production
            else load_or_create_key_file(key_file)
        )
        source = f"key file {key_file}"
    cipher = CredentialCipher(keys, source=source)
    _LOG.info(
        "credential keyring ready: primary key id %s, %d key(s), from %s",
        cipher.primary_key_id,
        len(cipher.key_ids),
        source,
    )
    return cipher
