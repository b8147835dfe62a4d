"""A throw-away PostgreSQL for `make bench --database postgres`: the same cluster set-up the
test fixtures use (initdb as the postgres user, loopback port, trust auth), started in the
bench's work dir and stopped with it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

_TESTS = Path(__file__).resolve().parent.parent / "tests"


def start(workdir: Path) -> tuple[Any, str]:
    """(server, SQLAlchemy URL of a fresh database on it); `server.stop()` ends it."""
    if str(_TESTS) not in sys.path:
        sys.path.insert(0, str(_TESTS))
    from support.postgres import start_postgres  # one cluster recipe for tests and bench

    server = start_postgres(workdir)
    try:
        url: str = server.create_database("bench")
    except BaseException:
        server.stop()
        raise
    return server, url
