"""Keyed hashes of CreateAccount requests: a retried requestId must carry the same content."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace

from mailaccounts_server.domain.model import NewAccount


class RequestHasher:
    """HMACs of a create request's content under each key, current key first; the password
    only ever enters an HMAC."""

    def __init__(self, keys: list[bytes]) -> None:
        self._keys = keys

    def hashes(self, new: NewAccount) -> list[str]:
        content = replace(new, request_id=None)
        material = repr(content).encode() + b"\x00" + (new.password or "").encode()
        return [hmac.new(k, material, hashlib.sha256).hexdigest() for k in self._keys]

    def current(self, new: NewAccount) -> str:
        return self.hashes(new)[0]

    def matches(self, new: NewAccount, stored: str) -> bool:
        return any(hmac.compare_digest(stored, h) for h in self.hashes(new))
