"""Shared fixtures: a real server per test on a fresh database (SQLite file or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mailaccounts_client import AccountClient
from mailaccounts_server.config import Settings
from mailaccounts_server.credentials import generate_key
from support.factories import new_caller
from support.grpc_server import ServerThread

pytest_plugins = ["support.postgres", "support.dovecot", "support.pki", "support.tokens"]

TEST_KEY = generate_key()


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
        db_threads=4,
        db_pool_size=5,
    )


@pytest.fixture
def make_server(settings: Settings) -> Iterator[Callable[..., ServerThread]]:
    """Starts servers (several may share the database); all are stopped after the test."""
    started: list[ServerThread] = []

    def start(**overrides: Any) -> ServerThread:
        from dataclasses import replace

        server = ServerThread(replace(settings, **overrides))
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
