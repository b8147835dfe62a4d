"""Settings from command-line flags and MAILACCOUNTS_* environment variables (flags win)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite:///mailaccounts.db"


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to start; built once in main and passed down."""

    listen: str = "[::]:50051"
    database_url: str = DEFAULT_DATABASE_URL
    log_level: str = "INFO"
    # Production refuses to start without configured credential keys (no key file fallback).
    production: bool = False
    credential_keys: str | None = field(default=None, repr=False)
    key_file: Path = Path("mailaccounts.key")
    retention_days: float = 30.0
    # How often `serve` purges accounts past retention; 0 turns the background purge off.
    purge_interval_seconds: float = 3600.0
    migrate_on_start: bool = True
    # PostgreSQL calls run on this many threads; measured on 2 cores at 50 in flight, 4 beat 1,
    # 2 and 8 (more threads only contend for the GIL).
    db_threads: int = 4
    db_pool_size: int = 10
    grace_seconds: float = 10.0
    # After SIGTERM: seconds of NOT_SERVING health while still serving, so load balancers
    # stop sending calls before the listener closes. Set it to the health-check period.
    drain_seconds: float = 0.0
    # TestConnection: extra CA bundle, deployment-wide TLS verification switch, SSRF allowlist.
    ca_file: str | None = None
    tls_verify: bool = True
    allow_networks: tuple[str, ...] = ()
    max_tests_per_tenant: int = 10
    max_tests_total: int = 200
    # `serve --workers N` runs N server processes on one port (SO_REUSEPORT); a process started
    # by it carries its index, which tells it not to spawn, migrate or (unless 0) purge.
    workers: int = 1
    worker_index: int | None = None

    @property
    def retention_us(self) -> int:
        return int(self.retention_days * 86_400 * 1_000_000)


def _env(name: str) -> str | None:
    value = os.environ.get(f"MAILACCOUNTS_{name}")
    return value if value not in (None, "") else None


def _truthy(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags every subcommand understands (they all need the database and keys)."""
    parser.add_argument("--database-url", help=f"SQLAlchemy URL [{DEFAULT_DATABASE_URL}]")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR [INFO]")
    parser.add_argument("--key-file", help="credential key file of the embedded default")
    parser.add_argument("--production", action="store_true", default=None,
                        help="refuse to start without MAILACCOUNTS_CREDENTIAL_KEYS")  # fmt: skip


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", help="address to listen on [[::]:50051]")
    parser.add_argument("--no-migrate", action="store_true", default=None,
                        help="do not apply database migrations at start-up")  # fmt: skip
    parser.add_argument("--ca-file", help="extra CA bundle trusted by TestConnection")
    parser.add_argument(
        "--workers", type=int, help="server processes sharing the port (SO_REUSEPORT) [1]"
    )
    parser.add_argument(
        "--allow-network",
        action="append",
        help="CIDR that TestConnection may reach despite the SSRF guard",
    )


def settings_from(args: argparse.Namespace) -> Settings:
    """Merges flags over environment variables over defaults."""

    def pick(flag: str, env: str) -> str | None:
        value = getattr(args, flag, None)
        return value if value is not None else _env(env)

    allow = getattr(args, "allow_network", None) or (_env("ALLOW_NETWORKS") or "").split(",")
    defaults = Settings()
    return Settings(
        listen=pick("listen", "LISTEN") or defaults.listen,
        database_url=pick("database_url", "DATABASE_URL") or defaults.database_url,
        log_level=(pick("log_level", "LOG_LEVEL") or defaults.log_level).upper(),
        production=bool(getattr(args, "production", None))
        or _truthy(_env("PRODUCTION"), defaults.production),
        credential_keys=_env("CREDENTIAL_KEYS"),
        key_file=Path(pick("key_file", "KEY_FILE") or defaults.key_file),
        retention_days=float(_env("RETENTION_DAYS") or defaults.retention_days),
        purge_interval_seconds=float(
            _env("PURGE_INTERVAL_SECONDS") or defaults.purge_interval_seconds
        ),
        migrate_on_start=not getattr(args, "no_migrate", None)
        and _truthy(_env("MIGRATE_ON_START"), defaults.migrate_on_start),
        db_threads=int(_env("DB_THREADS") or defaults.db_threads),
        db_pool_size=int(_env("DB_POOL_SIZE") or defaults.db_pool_size),
        grace_seconds=float(_env("GRACE_SECONDS") or defaults.grace_seconds),
        drain_seconds=float(_env("DRAIN_SECONDS") or defaults.drain_seconds),
        ca_file=pick("ca_file", "CA_FILE"),
        tls_verify=_truthy(_env("TLS_VERIFY"), defaults.tls_verify),
        allow_networks=tuple(a.strip() for a in allow if a and a.strip()),
        max_tests_per_tenant=int(_env("MAX_TESTS_PER_TENANT") or defaults.max_tests_per_tenant),
        max_tests_total=int(_env("MAX_TESTS_TOTAL") or defaults.max_tests_total),
        workers=int(pick("workers", "WORKERS") or defaults.workers),
        worker_index=int(index) if (index := _env("WORKER_INDEX")) is not None else None,
    )
