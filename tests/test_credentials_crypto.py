"""Tests for AES-GCM credential encryption, key parsing, key files and rotation."""

from __future__ import annotations

import base64
import logging
import os
import stat
from pathlib import Path

import pytest
from mailaccounts_server.credentials import (
    ConfigurationError,
    CredentialCipher,
    CredentialDecryptError,
    build_cipher,
    generate_key,
    load_or_create_key_file,
    parse_keys,
)

AAD = "tenant-1/user-1/cred-1"
SECRET = "correct horse battery staple ✓"


def _key(byte: int) -> bytes:
    return bytes([byte]) * 32


def _b64(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode("ascii")


def _raw(token: str) -> bytes:
    body = token.removeprefix("v1.")
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def _token(raw: bytes) -> str:
    return "v1." + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def test_round_trip() -> None:
    cipher = CredentialCipher([_key(1)])
    token = cipher.encrypt(SECRET, aad=AAD)
    assert isinstance(token, str)
    assert token.startswith("v1.")
    assert cipher.decrypt(token, aad=AAD) == SECRET


def test_empty_plaintext_round_trips() -> None:
    cipher = CredentialCipher([_key(1)])
    assert cipher.decrypt(cipher.encrypt("", aad=AAD), aad=AAD) == ""


def test_each_encryption_uses_a_fresh_nonce() -> None:
    cipher = CredentialCipher([_key(1)])
    first = cipher.encrypt(SECRET, aad=AAD)
    second = cipher.encrypt(SECRET, aad=AAD)
    assert first != second
    # Bytes 8..20 are the nonce (after the 8-byte key id).
    assert _raw(first)[8:20] != _raw(second)[8:20]
    assert cipher.decrypt(first, aad=AAD) == cipher.decrypt(second, aad=AAD) == SECRET


def test_ciphertext_does_not_contain_plaintext() -> None:
    cipher = CredentialCipher([_key(1)])
    plaintext = "hunter2hunter2hunter2"
    token = cipher.encrypt(plaintext, aad=AAD)
    assert plaintext not in token
    assert plaintext.encode() not in _raw(token)
    assert base64.urlsafe_b64encode(plaintext.encode()).decode().rstrip("=")[:16] not in token


def test_wrong_aad_fails() -> None:
    cipher = CredentialCipher([_key(1)])
    token = cipher.encrypt(SECRET, aad="tenant-1/user-1/cred-1")
    with pytest.raises(CredentialDecryptError) as excinfo:
        cipher.decrypt(token, aad="tenant-2/user-1/cred-1")
    assert SECRET not in str(excinfo.value)


@pytest.mark.parametrize("offset", [0, 8, 20, -1])
def test_tampered_token_fails(offset: int) -> None:
    cipher = CredentialCipher([_key(1)])
    raw = bytearray(_raw(cipher.encrypt(SECRET, aad=AAD)))
    raw[offset] ^= 0x01
    with pytest.raises(CredentialDecryptError):
        cipher.decrypt(_token(bytes(raw)), aad=AAD)


@pytest.mark.parametrize(
    "token",
    ["", "v1.", "v2.AAAA", "plaintext-password", "v1.!!!not-base64!!!", _token(b"\x00" * 35)],
)
def test_malformed_tokens_fail(token: str) -> None:
    cipher = CredentialCipher([_key(1)])
    with pytest.raises(CredentialDecryptError):
        cipher.decrypt(token, aad=AAD)


def test_non_canonical_encoding_is_rejected() -> None:
    cipher = CredentialCipher([_key(1)])
    token = cipher.encrypt(SECRET, aad=AAD)
    with pytest.raises(CredentialDecryptError):
        cipher.decrypt(token + "==", aad=AAD)


def test_rotation() -> None:
    old, new = _key(1), _key(2)
    legacy = CredentialCipher([old]).encrypt(SECRET, aad=AAD)

    ring = CredentialCipher([new, old])
    assert ring.decrypt(legacy, aad=AAD) == SECRET
    assert ring.is_current(legacy) is False

    rotated = ring.encrypt(ring.decrypt(legacy, aad=AAD), aad=AAD)
    assert ring.is_current(rotated) is True
    assert CredentialCipher([new]).decrypt(rotated, aad=AAD) == SECRET
    with pytest.raises(CredentialDecryptError):
        CredentialCipher([old]).decrypt(rotated, aad=AAD)
    # Rotation keeps the row binding: the new token still refuses another row's AAD.
    with pytest.raises(CredentialDecryptError):
        ring.decrypt(rotated, aad="tenant-2/user-1/cred-1")


def test_old_key_token_with_wrong_aad_fails() -> None:
    ring = CredentialCipher([_key(2), _key(1)])
    legacy = CredentialCipher([_key(1)]).encrypt(SECRET, aad=AAD)
    with pytest.raises(CredentialDecryptError):
        ring.decrypt(legacy, aad="other/row/id")


def test_unknown_key_fails_without_leaking() -> None:
    token = CredentialCipher([_key(1)]).encrypt(SECRET, aad=AAD)
    with pytest.raises(CredentialDecryptError) as excinfo:
        CredentialCipher([_key(2)]).decrypt(token, aad=AAD)
    message = str(excinfo.value)
    assert "not configured" in message
    assert SECRET not in message
    assert _b64(_key(1)) not in message


def test_primary_key_encrypts_and_key_ids_are_stable() -> None:
    ring = CredentialCipher([_key(2), _key(1)])
    assert ring.key_ids == (
        CredentialCipher([_key(2)]).primary_key_id,
        CredentialCipher([_key(1)]).primary_key_id,
    )
    token = ring.encrypt(SECRET, aad=AAD)
    assert ring.is_current(token)
    assert _raw(token)[:8].hex() == ring.primary_key_id
    assert _b64(_key(2)) not in repr(ring)


def test_cipher_rejects_bad_keys() -> None:
    with pytest.raises(ValueError):
        CredentialCipher([])
    with pytest.raises(ValueError):
        CredentialCipher([b"short"])


def test_parse_keys_accepts_padding_variants_and_orders_primary_first() -> None:
    k1, k2 = _key(7), _key(250)
    spec = f" {_b64(k1)} , {_b64(k2).rstrip('=')},"
    assert parse_keys(spec) == [k1, k2]
    # Standard-alphabet base64 (with + and /) is accepted too.
    assert parse_keys(base64.b64encode(k2).decode()) == [k2]


def test_generate_key_parses_and_is_random() -> None:
    first, second = generate_key(), generate_key()
    assert first != second
    assert len(parse_keys(first)[0]) == 32


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("", "no credential key"),
        (" , ", "no credential key"),
        ("not base64 at all!", "#1 is not valid base64"),
        (f"{_b64(b'x' * 32)},{_b64(b'y' * 16)}", "#2 decodes to 16 bytes; expected 32"),
    ],
)
def test_parse_keys_errors(spec: str, fragment: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_keys(spec)
    assert fragment in str(excinfo.value)


def test_parse_keys_error_does_not_echo_the_key() -> None:
    short_key = _b64(b"s3cr3t-key-material-31-bytes!!!")
    with pytest.raises(ValueError) as excinfo:
        parse_keys(short_key)
    assert short_key not in str(excinfo.value)
    assert short_key.rstrip("=") not in str(excinfo.value)


def test_key_file_created_with_mode_0600_and_reused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state" / "credential.key"
    with caplog.at_level(logging.INFO, logger="mailaccounts_server.credentials.crypto"):
        first = load_or_create_key_file(path)
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 1 and len(first[0]) == 32
    assert str(path) in caplog.text
    assert _b64(first[0]) not in caplog.text
    assert _b64(first[0]).rstrip("=") not in caplog.text
    # No temporary file is left next to the key.
    assert sorted(p.name for p in path.parent.iterdir()) == ["credential.key"]

    assert load_or_create_key_file(path) == first


def test_key_file_with_several_keys_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# primary first\n{_b64(_key(3))}\n\n{_b64(_key(4))},{_b64(_key(5))}\n")
    os.chmod(path, 0o600)
    assert load_or_create_key_file(path) == [_key(3), _key(4), _key(5)]


def test_key_file_with_wide_permissions_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keys"
    path.write_text(_b64(_key(3)) + "\n")
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, logger="mailaccounts_server.credentials.crypto"):
        assert load_or_create_key_file(path) == [_key(3)]
    assert "0644" in caplog.text
    assert _b64(_key(3)) not in caplog.text


def test_malformed_key_file_raises_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("garbage!\n")
    os.chmod(path, 0o600)
    with pytest.raises(ConfigurationError) as excinfo:
        load_or_create_key_file(path)
    assert "garbage" not in str(excinfo.value)


def test_build_cipher_keys_spec_wins(tmp_path: Path) -> None:
    key_file = tmp_path / "unused.key"
    cipher = build_cipher(keys_spec=_b64(_key(9)), key_file=key_file, production=True)
    assert cipher.primary_key_id == CredentialCipher([_key(9)]).primary_key_id
    assert not key_file.exists()


def test_build_cipher_production_without_keys_refuses(tmp_path: Path) -> None:
    key_file = tmp_path / "credential.key"
    for spec in (None, "", "   "):
        with pytest.raises(ConfigurationError) as excinfo:
            build_cipher(keys_spec=spec, key_file=key_file, production=True)
        assert "MAILACCOUNTS_CREDENTIAL_KEYS" in str(excinfo.value)
    assert not key_file.exists()


def test_build_cipher_invalid_spec_is_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        build_cipher(keys_spec="nope!", key_file=None, production=False)
    assert "MAILACCOUNTS_CREDENTIAL_KEYS" in str(excinfo.value)


def test_build_cipher_embedded_default_uses_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "credential.key"
    first = build_cipher(keys_spec=None, key_file=key_file, production=False)
    token = first.encrypt(SECRET, aad=AAD)
    second = build_cipher(keys_spec=None, key_file=key_file, production=False)
    assert second.decrypt(token, aad=AAD) == SECRET


def test_build_cipher_without_any_source_fails() -> None:
    with pytest.raises(ConfigurationError):
        build_cipher(keys_spec=None, key_file=None, production=False)
