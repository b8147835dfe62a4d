"""Shared fixtures: a real server per test on a fresh database (SQLite file or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts_client import AccountClient
from mailaccounts_server.config import Settings, env_name
from mailaccounts_server.credentials import generate_key
from sqlalchemy import Engine, create_engine
from support.factories import LOOPBACK, account_fields, new_caller
from support.grpc_server import ServerThread

pytest_plugins = ["support.postgres", "support.dovecot", "support.pki", "support.tokens"]

TEST_KEY = generate_key()


@pytest.fixture(autouse=True)
def _no_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings() reads MAILACCOUNTS_* variables: a developer's own must not change the tests."""
    for name in Settings.model_fields:
        monkeypatch.delenv(env_name(name), raising=False)
    monkeypatch.delenv("MAILACCOUNTS_POLICY_FILE", raising=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database for one test: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'accounts.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        credential_keys=TEST_KEY,
        key_file=tmp_path / "unused.key",
        db_pool_size=5,
        # Dovecot and the scripted mail servers of the tests listen on random high ports; the
        # port policy itself is tested with its defaults (tests/test_mail_hostile_ports.py and
        # test_connection_rpc_errors.py).
        allow_ports=("1024-65535",),
        # Load, concurrency and fuzz tests hammer one tenant far beyond a normal one: the rate
        # limits are tested with their own settings (test_rate_limits.py), off elsewhere.
        rate_reads_per_second=0,
        rate_writes_per_second=0,
        rate_tests_per_second=0,
        rate_failed_password_overrides_per_hour=0,
    )


@pytest.fixture
def make_server(settings: Settings) -> Iterator[Callable[..., ServerThread]]:
    """Starts servers (several may share the database); all are stopped after the test."""
    started: list[ServerThread] = []

    def start(**overrides: Any) -> ServerThread:
        server = ServerThread(settings.model_copy(update=overrides))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server()


@pytest.fixture
def client(server: ServerThread) -> Iterator[AccountClient]:
    with AccountClient(server.target, new_caller()) as c:
        yield c


@pytest.fixture
def account(client: AccountClient) -> pb.Account:
    """One valid account of `client`'s caller."""
    return client.create_account(**account_fields())


@pytest.fixture
def engine(settings: Settings, server: ServerThread) -> Iterator[Engine]:
    """Direct access to the test database (the server has applied the migrations)."""
    eng = create_engine(settings.database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def loopback_server(make_server: Callable[..., ServerThread]) -> ServerThread:
    """A server that may reach loopback, where the test mail servers and ports listen."""
    return make_server(allow_networks=LOOPBACK)


@pytest.fixture
def loopback_client(loopback_server: ServerThread) -> Iterator[AccountClient]:
    with AccountClient(loopback_server.target, new_caller()) as c:
        yield c
