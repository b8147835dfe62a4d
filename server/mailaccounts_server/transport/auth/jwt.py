"""Verifies JWT bearer tokens against a JWKS (a file or a URL) and caches what it verified."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import logging
import math
import re
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import jwt

from mailaccounts_server.credentials import ConfigurationError
from mailaccounts_server.domain.errors import UnauthenticatedError

_LOG = logging.getLogger(__name__)

ALLOWED_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
MAX_TOKEN_BYTES = 8192

# "Bearer " plus stray spaces around a token of the largest size accepted.
_MAX_HEADER_CHARS = MAX_TOKEN_BYTES + 64
_FETCH_TIMEOUT_SECONDS = 5.0
# An unknown kid is attacker-controlled: without a floor every bad token would hit the IdP.
_MIN_REFETCH_SECONDS = 30.0
_MAX_JWKS_BYTES = 1 << 20
_CACHE_SIZE = 10_000
# When full of live entries, evict a batch so the eviction scan is not paid on every insert.
_CACHE_EVICT_TO = _CACHE_SIZE * 9 // 10
_VALID_ID = re.compile(r"[\x21-\x7e]{1,128}")
_PRINTABLE = re.compile(r"[\x21-\x7e]+")
_MAX_ALG_SHOWN = 20

# Which algorithms each key type can verify. 'oct' (HMAC) keys are never used: a JWKS is
# public, so an HMAC key in it would let anyone mint tokens.
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGORITHM_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_OKP_CURVES = frozenset({"Ed25519", "Ed448"})
# Private members a JWKS should never carry; dropped so only public keys are ever loaded.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

_BAD_FORM = "authorization metadata must be 'Bearer <token>'"
_TOO_LARGE = f"token is larger than {MAX_TOKEN_BYTES // 1024} KiB"
_MALFORMED = "token is malformed"
_UNKNOWN_KEY = "token signing key is unknown"
_BAD_SIGNATURE = "token signature is invalid"
_EXPIRED = "token has expired"
_NOT_YET_VALID = "token is not yet valid"
_NO_EXP = "token has no exp claim"
_WRONG_AUDIENCE = "token has the wrong audience"
_WRONG_ISSUER = "token has the wrong issuer"


@dataclass(frozen=True)
class JwtSettings:
    """Where the signing keys are and what a token must say to be accepted."""

    jwks: str  # a JWKS file path, or an http:// or https:// URL
    issuer: str
    audience: str
    tenant_claim: str = "tenant_id"
    user_claim: str = "sub"
    roles_claim: str = "roles"
    leeway_seconds: float = 30.0
    algorithms: tuple[str, ...] = ALLOWED_ALGORITHMS
    jwks_refresh_seconds: float = 600.0  # URL only: how long fetched keys are trusted

    def __post_init__(self) -> None:
        if not self.jwks.strip():
            raise ConfigurationError("--jwt-jwks: give a JWKS file path or an http(s) URL")
        if not self.issuer.strip():
            raise ConfigurationError("--jwt-issuer: must not be empty")
        if not self.audience.strip():
            raise ConfigurationError("--jwt-audience: must not be empty")
        for flag, claim in (
            ("--jwt-tenant-claim", self.tenant_claim),
            ("--jwt-user-claim", self.user_claim),
            ("--jwt-roles-claim", self.roles_claim),
        ):
            if not claim:
                raise ConfigurationError(f"{flag}: must not be empty")
        if not self.algorithms:
            raise ConfigurationError("JWT algorithms: name at least one")
        unknown = [alg for alg in self.algorithms if alg not in ALLOWED_ALGORITHMS]
        if unknown:
            raise ConfigurationError(
                f"JWT algorithms: {', '.join(map(repr, unknown))} not allowed;"
                f" choose from {', '.join(ALLOWED_ALGORITHMS)}"
            )
        if not (math.isfinite(self.leeway_seconds) and self.leeway_seconds >= 0):
            raise ConfigurationError("--jwt-leeway-seconds: must be a number of seconds >= 0")
        if not (math.isfinite(self.jwks_refresh_seconds) and self.jwks_refresh_seconds > 0):
            raise ConfigurationError("JWKS refresh interval: must be a number of seconds > 0")


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token says about its caller."""

    subject: str  # the 'sub' claim ("" if absent)
    tenant_id: str
    user_id: str
    roles: tuple[str, ...] | None  # None when the token has no roles claim
    expires_at: float  # 'exp' as epoch seconds


@dataclass(frozen=True, slots=True)
class _Key:
    """One JWKS key, ready to verify each configured algorithm it fits."""

    kid: str | None
    by_algorithm: Mapping[str, jwt.PyJWK]


class _JwksError(Exception):
    """The JWKS cannot be read or holds no usable key; the message is for the operator."""


class JwtVerifier:
    """Checks 'Bearer <token>' values: signature, algorithm, time, issuer, audience, ids."""

    def __init__(self, settings: JwtSettings, *, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._is_url = _is_url(settings.jwks)
        try:
            self._keys = _load_keys(settings.jwks, settings.algorithms)
        except _JwksError as exc:
            raise ConfigurationError(f"--jwt-jwks: {exc}") from None
        _LOG.info("JWT verification uses %d key(s) from %s", len(self._keys), settings.jwks)
        now = clock()
        self._fetched_at = now
        self._last_fetch_attempt = now
        self._generation = 0
        self._refresh_lock = asyncio.Lock()
        # Keyed by a digest of the header so the cache never holds the tokens themselves.
        self._cache: dict[bytes, TokenClaims] = {}

    async def verify(self, authorization: str) -> TokenClaims:
        """The claims of a valid token; UnauthenticatedError saying what is wrong otherwise."""
        if len(authorization) > _MAX_HEADER_CHARS:
            raise UnauthenticatedError(_TOO_LARGE)
        cached = self.verify_cached(authorization)
        if cached is not None:
            return cached
        token = _bearer_token(authorization)
        algorithm, kid = _algorithm_and_kid(token, self._settings.algorithms)
        if self._is_url:
            await self._refresh_if_stale()
        key = self._find_key(kid, algorithm)
        if key is None and self._is_url and await self._refetch():
            key = self._find_key(kid, algorithm)
        if key is None:
            raise UnauthenticatedError(_UNKNOWN_KEY)
        claims = self._decode(token, key, algorithm)
        self._remember(_cache_key(authorization), claims)
        return claims

    def verify_cached(self, authorization: str) -> TokenClaims | None:
        """The claims of this exact header if it was verified before and has not expired."""
        if len(authorization) > _MAX_HEADER_CHARS:
            return None
        key = _cache_key(authorization)
        claims = self._cache.get(key)
        if claims is None:
            return None
        if self._clock() < claims.expires_at + self._settings.leeway_seconds:
            return claims
        self._cache.pop(key, None)
        return None

    def _find_key(self, kid: str | None, algorithm: str) -> jwt.PyJWK | None:
        """The key for this token; None if unknown. A kid naming a key of another type is a
        bad signature, not an unknown key: refetching would not change the answer."""
        keys = self._keys
        if kid is None:
            usable = [key.by_algorithm[algorithm] for key in keys if algorithm in key.by_algorithm]
            return usable[0] if len(usable) == 1 else None
        named = [key for key in keys if key.kid == kid]
        if not named:
            return None
        for key in named:
            if algorithm in key.by_algorithm:
                return key.by_algorithm[algorithm]
        raise UnauthenticatedError(_BAD_SIGNATURE)

    async def _refresh_if_stale(self) -> None:
        """Refetch keys older than jwks_refresh_seconds; calls arriving meanwhile don't wait."""
        if self._refresh_lock.locked():
            return
        if self._clock() - self._fetched_at >= self._settings.jwks_refresh_seconds:
            await self._refetch()

    async def _refetch(self) -> bool:
        """Fetch the JWKS again (at most once per 30 s); True if the keys may have changed."""
        generation = self._generation
        async with self._refresh_lock:
            if self._generation != generation:
                return True  # another call refetched while this one waited
            now = self._clock()
            since = now - self._last_fetch_attempt
            if 0 <= since < _MIN_REFETCH_SECONDS:
                return False
            self._last_fetch_attempt = now
            try:
                keys = await asyncio.to_thread(
                    _load_keys, self._settings.jwks, self._settings.algorithms
                )
            except _JwksError as exc:
                _LOG.warning(
                    "JWKS refetch failed, keeping the %d key(s) loaded before: %s",
                    len(self._keys),
                    exc,
                )
                return False
            self._keys = keys
            self._fetched_at = now
            self._generation += 1
            _LOG.info("JWKS refetched from %s: %d key(s)", self._settings.jwks, len(keys))
            return True

    def _decode(self, token: str, key: jwt.PyJWK, algorithm: str) -> TokenClaims:
        settings = self._settings
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway_seconds,
                options={
                    "require": ["exp"],
                    # Time is checked below against self._clock, the same clock the cache uses.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    # 'sub' is checked below only when it is the user claim.
                    "verify_sub": False,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.ExpiredSignatureError:
            _refuse(_EXPIRED)
        except jwt.ImmatureSignatureError:
            _refuse(_NOT_YET_VALID)
        except jwt.InvalidAudienceError:
            _refuse(_WRONG_AUDIENCE)
        except jwt.InvalidIssuerError:
            _refuse(_WRONG_ISSUER)
        except jwt.MissingRequiredClaimError as exc:
            missing = {"exp": _NO_EXP, "aud": _WRONG_AUDIENCE, "iss": _WRONG_ISSUER}
            _refuse(missing.get(exc.claim, _MALFORMED))
        except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError, jwt.InvalidKeyError):
            _refuse(_BAD_SIGNATURE)
        except jwt.PyJWTError:
            _refuse(_MALFORMED)
        except (ValueError, TypeError) as exc:
            # Not expected from PyJWT, but a crafted token must never become INTERNAL.
            _LOG.warning("JWT verification raised %s; token refused", type(exc).__name__)
            _refuse(_BAD_SIGNATURE)
        return self._claims(payload)

    def _claims(self, payload: dict[str, Any]) -> TokenClaims:
        settings = self._settings
        now = self._clock()
        leeway = settings.leeway_seconds
        expires_at = _numeric_date(payload, "exp")
        if expires_at is None:
            _refuse(_NO_EXP)
        if expires_at <= now - leeway:
            _refuse(_EXPIRED)
        for claim in ("nbf", "iat"):
            not_before = _numeric_date(payload, claim)
            if not_before is not None and not_before > now + leeway:
                _refuse(_NOT_YET_VALID)
        tenant_id = _id_claim(payload, settings.tenant_claim, "tenant")
        user_id = _id_claim(payload, settings.user_claim, "user")
        subject = payload.get("sub")
        return TokenClaims(
            subject=subject if isinstance(subject, str) else "",
            tenant_id=tenant_id,
            user_id=user_id,
            roles=_roles(payload, settings.roles_claim),
            expires_at=expires_at,
        )

    def _remember(self, key: bytes, claims: TokenClaims) -> None:
        if len(self._cache) >= _CACHE_SIZE:
            self._evict()
        self._cache[key] = claims

    def _evict(self) -> None:
        """Drop expired entries, then the oldest ones, to make room."""
        horizon = self._clock() - self._settings.leeway_seconds
        for key, claims in list(self._cache.items()):
            if claims.expires_at <= horizon:
                self._cache.pop(key, None)
        if len(self._cache) >= _CACHE_SIZE:
            # Dicts keep insertion order, so the first keys are the oldest.
            for key in list(self._cache)[: len(self._cache) - _CACHE_EVICT_TO]:
                self._cache.pop(key, None)


def _refuse(message: str) -> NoReturn:
    # 'from None': a PyJWT exception's text can quote parts of the token.
    raise UnauthenticatedError(message) from None


def _cache_key(authorization: str) -> bytes:
    return hashlib.sha256(authorization.encode("utf-8", "surrogatepass")).digest()


def _bearer_token(authorization: str) -> str:
    parts = authorization.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise UnauthenticatedError(_BAD_FORM)
    token = parts[1]
    if len(token) > MAX_TOKEN_BYTES:
        raise UnauthenticatedError(_TOO_LARGE)
    if not token.isascii():
        raise UnauthenticatedError(_MALFORMED)
    return token


def _algorithm_and_kid(token: str, allowed: tuple[str, ...]) -> tuple[str, str | None]:
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.PyJWTError, ValueError):
        _refuse(_MALFORMED)
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in allowed:
        shown = algorithm[:_MAX_ALG_SHOWN] if isinstance(algorithm, str) else ""
        if _PRINTABLE.fullmatch(shown):
            raise UnauthenticatedError(f"token algorithm {shown} is not allowed")
        raise UnauthenticatedError("token algorithm is not allowed")
    kid = header.get("kid")  # PyJWT has checked that a kid, if present, is a string
    return algorithm, kid if isinstance(kid, str) else None


def _numeric_date(payload: Mapping[str, Any], claim: str) -> float | None:
    value = payload.get(claim)
    if value is None:
        return None
    # bool is an int subclass; a string date would be a sloppy issuer we should not guess for.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        _refuse(f"token claim '{claim}' is not a number")
    return float(value)


def _id_claim(payload: Mapping[str, Any], claim: str, kind: str) -> str:
    value = payload.get(claim)
    if not isinstance(value, str) or not value:
        _refuse(f"token has no {kind} claim '{claim}'")
    if not _VALID_ID.fullmatch(value):
        _refuse(f"token claim '{claim}' is not a valid id")
    return value


def _roles(payload: Mapping[str, Any], claim: str) -> tuple[str, ...] | None:
    if claim not in payload:
        return None
    value = payload[claim]
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list) and all(isinstance(role, str) for role in value):
        return tuple(value)
    # Refused rather than read as "no roles": None may mean "fall back to the policy".
    _refuse(f"token claim '{claim}' must be a list of strings or a space-separated string")


def _is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


def _load_keys(source: str, algorithms: tuple[str, ...]) -> tuple[_Key, ...]:
    """Read and parse the JWKS; _JwksError when unreadable, invalid or without a usable key."""
    data = _read_jwks(source)
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise _JwksError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise _JwksError(f"{source} is not a JWKS: expected an object with a 'keys' list")
    keys = tuple(
        key
        for index, entry in enumerate(document["keys"])
        if (key := _parse_key(source, index, entry, algorithms)) is not None
    )
    if not keys:
        raise _JwksError(
            f"{source} has no usable RSA, EC or OKP signing key for {', '.join(algorithms)}"
        )
    return keys


def _read_jwks(source: str) -> bytes:
    try:
        if _is_url(source):
            request = urllib.request.Request(source, headers={"Accept": "application/json"})
            with urllib.request.urlopen(request, timeout=_FETCH_TIMEOUT_SECONDS) as response:
                data: bytes = response.read(_MAX_JWKS_BYTES + 1)
        else:
            with open(source, "rb") as file:
                data = file.read(_MAX_JWKS_BYTES + 1)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise _JwksError(f"cannot read {source}: {exc}") from None
    if len(data) > _MAX_JWKS_BYTES:
        raise _JwksError(f"{source} is larger than {_MAX_JWKS_BYTES // (1 << 20)} MiB")
    return data


def _parse_key(source: str, index: int, entry: object, algorithms: tuple[str, ...]) -> _Key | None:
    """One JWKS entry as a _Key, or None (with a warning) when it cannot verify tokens."""
    if not isinstance(entry, dict):
        _LOG.warning("JWKS %s: key #%d is not an object; ignored", source, index)
        return None
    kid = entry.get("kid")
    name = f"#{index}" if kid is None else f"#{index} (kid {kid!r})"
    if kid is not None and not isinstance(kid, str):
        _LOG.warning("JWKS %s: key %s has a kid that is not a string; ignored", source, name)
        return None
    kty = entry.get("kty")
    if kty == "oct":
        _LOG.warning(
            "JWKS %s: key %s is a symmetric ('oct') key; ignored, only RSA, EC and OKP"
            " keys are used",
            source,
            name,
        )
        return None
    if kty not in ("RSA", "EC", "OKP"):
        _LOG.warning("JWKS %s: key %s has unsupported kty %r; ignored", source, name, kty)
        return None
    if entry.get("use", "sig") != "sig":
        _LOG.warning(
            "JWKS %s: key %s is not for signatures (use %r); ignored",
            source,
            name,
            entry.get("use"),
        )
        return None
    if _PRIVATE_MEMBERS & entry.keys():
        _LOG.warning(
            "JWKS %s: key %s holds private key material; only its public part is used", source, name
        )
    public = {member: value for member, value in entry.items() if member not in _PRIVATE_MEMBERS}
    by_algorithm: dict[str, jwt.PyJWK] = {}
    for algorithm in algorithms:
        if not _fits(public, algorithm):
            continue
        try:
            pyjwk = jwt.PyJWK(public, algorithm)
            weak = pyjwk.Algorithm.check_key_length(pyjwk.Algorithm.prepare_key(pyjwk.key))
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            _LOG.warning("JWKS %s: key %s is invalid (%s); ignored", source, name, exc)
            return None
        if weak:
            _LOG.warning("JWKS %s: key %s is too weak (%s); ignored", source, name, weak)
            return None
        by_algorithm[algorithm] = pyjwk
    if not by_algorithm:
        _LOG.warning(
            "JWKS %s: key %s fits none of the allowed algorithms %s; ignored",
            source,
            name,
            ", ".join(algorithms),
        )
        return None
    return _Key(kid=kid, by_algorithm=by_algorithm)


def _fits(jwk: Mapping[str, Any], algorithm: str) -> bool:
    """Whether this key may verify this algorithm (its type, curve and any 'alg' it names)."""
    declared = jwk.get("alg")
    if declared is not None and declared != algorithm:
        return False
    kty = jwk.get("kty")
    if kty == "RSA":
        return algorithm in _RSA_ALGORITHMS
    if kty == "EC":
        curve = _EC_ALGORITHM_CURVES.get(algorithm)
        return curve is not None and jwk.get("crv") == curve
    if kty == "OKP":
        return algorithm == "EdDSA" and jwk.get("crv") in _OKP_CURVES
    return False
