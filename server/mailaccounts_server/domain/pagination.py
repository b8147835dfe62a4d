"""Opaque, tamper-evident page tokens: a keyset cursor signed with HMAC and bound to the caller
and the filters, so a forged token or one from another tenant or query is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from mailaccounts_server.domain.errors import invalid
from mailaccounts_server.domain.model import Caller

_SIG_BYTES = 16


class PageTokenCodec:
    """Encodes and checks page tokens with a secret shared by every replica."""

    def __init__(self, secrets: list[bytes]) -> None:
        # Signs with the first secret and accepts any, so tokens survive a key rotation.
        self._secrets = secrets

    @staticmethod
    def _sign(secret: bytes, payload: bytes) -> bytes:
        return hmac.new(secret, payload, hashlib.sha256).digest()[:_SIG_BYTES]

    def encode(self, caller: Caller, scope: str, cursor: tuple[int, str]) -> str:
        body = json.dumps([cursor[0], cursor[1]], separators=(",", ":")).encode()
        bound = _binding(caller, scope) + body
        token = self._sign(self._secrets[0], bound) + body
        return base64.urlsafe_b64encode(token).decode().rstrip("=")

    def decode(self, token: str, caller: Caller, scope: str) -> tuple[int, str]:
        """The cursor inside `token`; INVALID_ARGUMENT when it was not issued for this query."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except ValueError:
            raise invalid("pageToken", "pageToken is malformed") from None
        sig, body = raw[:_SIG_BYTES], raw[_SIG_BYTES:]
        bound = _binding(caller, scope) + body
        if not any(hmac.compare_digest(sig, self._sign(k, bound)) for k in self._secrets):
            raise invalid("pageToken", "pageToken is not valid for this caller and query")
        try:
            time_us, last_id = json.loads(body)
            return int(time_us), str(last_id)
        except (ValueError, TypeError):
            raise invalid("pageToken", "pageToken is malformed") from None


def _binding(caller: Caller, scope: str) -> bytes:
    return json.dumps([caller.tenant_id, caller.user_id, scope]).encode() + b"\n"
