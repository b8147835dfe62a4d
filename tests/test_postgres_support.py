"""Tests for the throw-away PostgreSQL helper: per-test databases are real and isolated."""

from __future__ import annotations

import uuid

import psycopg
from support.postgres import PostgresServer

_MARKER_TABLE = "isolation_marker"


def _connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    # psycopg wants a libpq URL, SQLAlchemy's carries the driver name.
    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


def _table_exists(url: str) -> bool:
    with _connect(url) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (_MARKER_TABLE,)).fetchone()
    assert row is not None
    return bool(row[0])


def test_database_accepts_ddl_and_dml(postgres_url: str, postgres_server: PostgresServer) -> None:
    assert postgres_url.startswith(
        f"postgresql+psycopg://postgres@127.0.0.1:{postgres_server.port}/"
    )
    assert postgres_server.admin_url().endswith("/postgres")
    with _connect(postgres_url) as conn:
        conn.execute(f"CREATE TABLE {_MARKER_TABLE} (id int PRIMARY KEY, note text)")
        conn.execute(f"INSERT INTO {_MARKER_TABLE} VALUES (1, 'first test')")
        row = conn.execute(f"SELECT note FROM {_MARKER_TABLE} WHERE id = 1").fetchone()
        server_version = conn.info.server_version
    assert row == ("first test",)
    assert server_version >= 130000  # DROP DATABASE ... WITH (FORCE) needs 13+


def test_each_test_gets_its_own_database(postgres_url: str) -> None:
    # Runs after the test above (file order): its table must not be visible here.
    assert not _table_exists(postgres_url)
    with _connect(postgres_url) as conn:
        conn.execute(f"CREATE TABLE {_MARKER_TABLE} (id int)")
    assert _table_exists(postgres_url)


def test_databases_are_distinct_and_dropped(postgres_server: PostgresServer) -> None:
    suffix = uuid.uuid4().hex[:8]
    names = [f"t_support_a_{suffix}", f"t_support_b_{suffix}"]
    first, second = (postgres_server.create_database(name) for name in names)
    try:
        assert first != second
        with _connect(first) as conn:
            conn.execute(f"CREATE TABLE {_MARKER_TABLE} (id int)")
        assert _table_exists(first)
        assert not _table_exists(second)
    finally:
        for name in names:
            postgres_server.drop_database(name)
    with _connect(postgres_server.admin_url()) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s)", (names,)
        ).fetchall()
    assert rows == []
