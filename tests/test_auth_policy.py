"""The TOML policy: what it grants, what it refuses to load, and how it reloads."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest
from mailaccounts_server.credentials import ConfigurationError
from mailaccounts_server.transport.auth.policy import (
    EMPTY_POLICY,
    ROLES,
    Grant,
    PolicyStore,
    load_policy,
)

EXAMPLE = """
[identities."spiffe://corp/ns/billing/sa/api"]
tenants = ["t1", "t2"]
roles = ["accounts"]

[identities."spiffe://corp/ns/ops/sa/admin"]
tenants = ["*"]
roles = ["tenant_admin", "sync_worker"]
"""

ONE_IDENTITY = """
[identities."svc-a"]
tenants = ["t1"]
roles = ["accounts"]
"""

TWO_IDENTITIES = (
    ONE_IDENTITY
    + """
[identities."svc-b"]
tenants = ["t9"]
roles = ["sync_worker"]
"""
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def replace(path: Path, text: str) -> None:
    """Swap the file the way config management does: write a new file, rename it over."""
    staging = path.with_suffix(".new")
    staging.write_text(text, encoding="utf-8")
    os.replace(staging, path)


def test_example_policy_grants_listed_tenants_and_roles(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path / "policy.toml", EXAMPLE))
    billing = policy.grant_for("spiffe://corp/ns/billing/sa/api")
    assert billing == Grant(tenants=frozenset({"t1", "t2"}), roles=frozenset({"accounts"}))
    assert billing.allows_tenant("t1") and billing.allows_tenant("t2")
    assert not billing.allows_tenant("t3")
    assert policy.grant_for("spiffe://corp/ns/unknown") is None
    assert len(policy.grants) == 2


def test_star_tenant_allows_every_tenant(tmp_path: Path) -> None:
    grant = load_policy(write(tmp_path / "policy.toml", EXAMPLE)).grant_for(
        "spiffe://corp/ns/ops/sa/admin"
    )
    assert grant is not None and grant.tenants is None
    assert grant.allows_tenant("t1") and grant.allows_tenant("anything-else")
    assert grant.roles == frozenset({"tenant_admin", "sync_worker"})


@pytest.mark.parametrize("text", ["", "# no one is allowed yet\n\n"])
def test_empty_file_is_the_empty_policy(tmp_path: Path, text: str) -> None:
    policy = load_policy(write(tmp_path / "policy.toml", text))
    assert policy == EMPTY_POLICY
    assert policy.grant_for("svc-a") is None


def test_empty_identities_table_allows_no_one(tmp_path: Path) -> None:
    assert load_policy(write(tmp_path / "policy.toml", "[identities]\n")).grants == {}


def test_policy_grants_are_read_only(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path / "policy.toml", ONE_IDENTITY))
    with pytest.raises(TypeError):
        policy.grants["intruder"] = Grant(tenants=None, roles=ROLES)  # type: ignore[index]


BAD_POLICIES = [
    ("toml-syntax", '[identities."a"]\ntenants = ["t1"]\nroles = = 1\n', "(at line 3, column 9)"),
    ("no-identities-table", 'x = 1\n[identities."a"]\n', "unknown top-level key(s) 'x'"),
    ("identities-not-table", "identities = 3\n", "'identities' must be a table"),
    ("empty-identity", '[identities.""]\ntenants = ["t1"]\nroles = ["accounts"]\n', "empty"),
    ("identity-not-table", '[identities]\n"a" = "t1"\n', "identity 'a': must be a table"),
    (
        "unknown-key",
        '[identities."a"]\ntenants = ["t1"]\nroles = ["accounts"]\nrole = ["x"]\n',
        "identity 'a': unknown key(s) 'role'",
    ),
    ("tenants-missing", '[identities."a"]\nroles = ["accounts"]\n', "'tenants' is missing"),
    (
        "tenants-empty",
        '[identities."a"]\ntenants = []\nroles = ["accounts"]\n',
        "'tenants' must be a non-empty list of strings",
    ),
    (
        "tenants-string",
        '[identities."a"]\ntenants = "t1"\nroles = ["accounts"]\n',
        "'tenants' must be a non-empty list of strings",
    ),
    (
        "tenants-number",
        '[identities."a"]\ntenants = [1]\nroles = ["accounts"]\n',
        "'tenants' must be a non-empty list of strings",
    ),
    (
        "tenant-with-space",
        '[identities."a"]\ntenants = ["t 1"]\nroles = ["accounts"]\n',
        "tenant 't 1' is not a valid id",
    ),
    (
        "star-mixed",
        '[identities."a"]\ntenants = ["*", "t1"]\nroles = ["accounts"]\n',
        "list no others with it",
    ),
    ("roles-missing", '[identities."a"]\ntenants = ["t1"]\n', "'roles' is missing"),
    (
        "roles-empty",
        '[identities."a"]\ntenants = ["t1"]\nroles = []\n',
        "'roles' must be a non-empty list of strings",
    ),
    (
        "unknown-role",
        '[identities."a"]\ntenants = ["t1"]\nroles = ["admin"]\n',
        "unknown role 'admin'; allowed roles: accounts, sync_worker, tenant_admin",
    ),
    ("not-utf8", b"\xff\xfe[identities]\n", "not UTF-8"),
]


@pytest.mark.parametrize(
    ("content", "expected"),
    [(c, x) for _, c, x in BAD_POLICIES],
    ids=[i for i, _, _ in BAD_POLICIES],
)
def test_bad_policy_file_is_a_configuration_error_naming_file_and_problem(
    tmp_path: Path, content: str | bytes, expected: str
) -> None:
    path = tmp_path / "policy.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        write(path, content)
    with pytest.raises(ConfigurationError) as info:
        load_policy(path)
    assert str(info.value).startswith(f"policy file {path}: ")
    assert expected in str(info.value)


def test_unreadable_policy_file_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    with pytest.raises(ConfigurationError, match="cannot read it"):
        load_policy(path)
    with pytest.raises(ConfigurationError, match=f"policy file {path}"):
        PolicyStore(path)


def test_store_serves_the_policy_loaded_at_start(tmp_path: Path) -> None:
    store = PolicyStore(write(tmp_path / "policy.toml", ONE_IDENTITY))
    assert store.current.grant_for("svc-a") is not None
    assert store.current.grant_for("svc-b") is None


def test_reload_keeps_old_policy_on_a_broken_file_and_picks_up_a_fixed_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "policy.toml", ONE_IDENTITY)
    store = PolicyStore(path)
    before = store.current
    write(path, '[identities."svc-a"]\ntenants = ["t1"]\nroles = ["root"]\n')
    with caplog.at_level(logging.WARNING):
        assert store.reload() is False
    assert store.current is before
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unknown role 'root'" in warnings[0].getMessage()

    write(path, TWO_IDENTITIES)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert store.reload() is True
    assert store.current.grant_for("svc-b") is not None
    assert "2 identities" in caplog.text


def test_reload_if_changed_only_reloads_a_changed_file(tmp_path: Path) -> None:
    path = write(tmp_path / "policy.toml", ONE_IDENTITY)
    store = PolicyStore(path)
    first = store.current
    assert store.reload_if_changed() is False
    assert store.current is first
    replace(path, TWO_IDENTITIES)
    assert store.reload_if_changed() is True
    assert store.current.grant_for("svc-b") is not None
    assert store.reload_if_changed() is False


def test_reload_if_changed_sees_os_replace_with_same_size_and_mtime(tmp_path: Path) -> None:
    path = write(tmp_path / "policy.toml", ONE_IDENTITY)
    store = PolicyStore(path)
    stat = path.stat()
    replace(path, ONE_IDENTITY.replace("t1", "t2"))  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: only the inode differs
    assert store.reload_if_changed() is True
    grant = store.current.grant_for("svc-a")
    assert grant is not None and grant.allows_tenant("t2") and not grant.allows_tenant("t1")


def test_broken_file_is_reported_once_not_on_every_check(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "policy.toml", ONE_IDENTITY)
    store = PolicyStore(path)
    replace(path, "[identities\n")
    with caplog.at_level(logging.WARNING):
        assert store.reload_if_changed() is False
        assert store.reload_if_changed() is False
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert store.current.grant_for("svc-a") is not None


def test_watch_picks_up_a_change_within_two_seconds(tmp_path: Path) -> None:
    path = write(tmp_path / "policy.toml", ONE_IDENTITY)
    store = PolicyStore(path)

    async def scenario() -> float:
        watcher = asyncio.create_task(store.watch(interval=0.05))
        try:
            await asyncio.sleep(0.1)
            replace(path, TWO_IDENTITIES)
            loop = asyncio.get_running_loop()
            started = loop.time()
            while store.current.grant_for("svc-b") is None:
                assert loop.time() - started < 2.0, "watch() did not reload within 2 s"
                await asyncio.sleep(0.02)
            return loop.time() - started
        finally:
            watcher.cancel()
            with pytest.raises(asyncio.CancelledError):
                await watcher

    assert asyncio.run(scenario()) < 2.0
    assert store.current.grant_for("svc-a") is not None
