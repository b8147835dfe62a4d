"""Which tenants and roles each caller identity may use, read from a TOML policy file."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mailaccounts_server.credentials import ConfigurationError

_LOG = logging.getLogger(__name__)

ROLES = frozenset({"accounts", "tenant_admin", "sync_worker"})
ALL_TENANTS = "*"
_IDENTITY_KEYS = frozenset({"tenants", "roles"})
# Same rule as tenant ids in metadata and tokens: a typo like " t1" would otherwise never match.
_VALID_TENANT = re.compile(r"[\x21-\x7e]{1,128}")

_FileStamp = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class Grant:
    """What one identity may do: the tenants it may act in and the roles it holds."""

    tenants: frozenset[str] | None  # None = every tenant ("*")
    roles: frozenset[str]

    def allows_tenant(self, tenant_id: str) -> bool:
        return self.tenants is None or tenant_id in self.tenants


@dataclass(frozen=True)
class Policy:
    """The grants of every identity the policy file names; any other identity has none."""

    grants: Mapping[str, Grant]

    def grant_for(self, identity: str) -> Grant | None:
        return self.grants.get(identity)


EMPTY_POLICY = Policy(MappingProxyType({}))


def load_policy(path: Path) -> Policy:
    """Parse the policy file; ConfigurationError naming the file, identity and problem."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"policy file {path}: cannot read it: {exc.strerror or exc}"
        ) from None
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigurationError(f"policy file {path}: is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"policy file {path}: TOML syntax error: {exc}") from None
    if not document:
        return EMPTY_POLICY  # an empty file (or only comments) allows no one
    unknown = sorted(set(document) - {"identities"})
    if unknown:
        raise ConfigurationError(
            f"policy file {path}: unknown top-level key(s) {', '.join(map(repr, unknown))};"
            " only an [identities] table is allowed"
        )
    identities = document["identities"]
    if not isinstance(identities, dict):
        raise ConfigurationError(f"policy file {path}: 'identities' must be a table")
    grants: dict[str, Grant] = {}
    for identity, table in identities.items():
        if not identity.strip():
            raise ConfigurationError(f"policy file {path}: an identity name is empty")
        try:
            grants[identity] = _grant(table)
        except ValueError as exc:
            raise ConfigurationError(f"policy file {path}: identity {identity!r}: {exc}") from None
    return Policy(MappingProxyType(grants))


def _grant(table: Any) -> Grant:
    """One identity's table as a Grant; ValueError saying what is wrong."""
    if not isinstance(table, dict):
        raise ValueError("must be a table with 'tenants' and 'roles'")
    unknown = sorted(set(table) - _IDENTITY_KEYS)
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: 'tenants', 'roles'"
        )
    tenants = _string_list(table, "tenants")
    for tenant in tenants:
        if tenant != ALL_TENANTS and not _VALID_TENANT.fullmatch(tenant):
            raise ValueError(
                f"tenant {tenant!r} is not a valid id (1-128 printable ASCII, no spaces)"
            )
    if ALL_TENANTS in tenants and len(set(tenants)) > 1:
        raise ValueError(f"tenants {ALL_TENANTS!r} means every tenant; list no others with it")
    roles = _string_list(table, "roles")
    allowed = ", ".join(sorted(ROLES))
    for role in roles:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; allowed roles: {allowed}")
    return Grant(
        tenants=None if ALL_TENANTS in tenants else frozenset(tenants),
        roles=frozenset(roles),
    )


def _string_list(table: Mapping[str, Any], key: str) -> list[str]:
    value = table.get(key)
    if value is None:
        raise ValueError(f"'{key}' is missing; it must be a non-empty list of strings")
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"'{key}' must be a non-empty list of strings")
    return value


def _stamp(path: Path) -> _FileStamp | None:
    """What identifies one version of the file; the inode catches an os.replace."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


class PolicyStore:
    """The current policy, swapped whole on reload so calls in flight keep the one they read."""

    def __init__(self, path: Path) -> None:
        self._path = path
        # Stamped before reading: a write during the read shows up as a change next time.
        self._stamp = _stamp(path)
        self._policy = load_policy(path)
        _LOG.info("policy loaded from %s: %d identities", path, len(self._policy.grants))

    @property
    def path(self) -> Path:
        return self._path

    @property
    def current(self) -> Policy:
        return self._policy

    def reload(self) -> bool:
        """Re-read the file; on error keep the old policy, log a warning and return False."""
        stamp = _stamp(self._path)
        try:
            policy = load_policy(self._path)
        except ConfigurationError as exc:
            # Remember the broken version so the watcher warns once, not every interval.
            self._stamp = stamp
            _LOG.warning("policy not reloaded, keeping the previous one: %s", exc)
            return False
        self._policy = policy
        self._stamp = stamp
        _LOG.info("policy reloaded from %s: %d identities", self._path, len(policy.grants))
        return True

    def reload_if_changed(self) -> bool:
        """Reload when the file's mtime, size or inode changed; True if a new policy is in use."""
        if _stamp(self._path) == self._stamp:
            return False
        return self.reload()

    async def watch(self, interval: float = 1.0) -> None:
        """Reload the file whenever it changes, until cancelled. A change is loaded once the
        file has stayed the same for one interval, so a file written in place is not read
        half-written (an empty or cut-off policy would deny callers in the meantime)."""
        settling: _FileStamp | None = self._stamp
        while True:
            await asyncio.sleep(interval)
            try:
                stamp = _stamp(self._path)
                if stamp != self._stamp and stamp == settling:
                    self.reload()
                settling = stamp
            except Exception:
                # A bug in one reload must not stop later ones; the old policy stays in force.
                _LOG.exception("policy reload of %s failed", self._path)
