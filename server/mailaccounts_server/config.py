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

    # Loopback by default: the embedded default serves plaintext without caller authentication,
    # which only a local user may reach. Another address needs TLS or --allow-plaintext.
    listen: str = "localhost:50051"
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
    # Transport security: server TLS (files re-read when they change), and client certificates
    # verified against client_ca (mutual TLS).
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None
    # Plaintext on a non-loopback address, for a mesh whose sidecar terminates mTLS.
    allow_plaintext: bool = False
    # Caller authentication: none | mtls | jwt | mtls+jwt (see transport/auth).
    auth: str = "none"
    policy_file: str | None = None
    jwt_jwks: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_tenant_claim: str = "tenant_id"
    jwt_user_claim: str = "sub"
    jwt_roles_claim: str = "roles"
    jwt_leeway_seconds: float = 30.0
    # A plaintext listener that serves only grpc.health.v1, for probes without certificates.
    health_listen: str | None = None
    # Server reflection; None means on, except with --production.
    reflection: bool | None = None

    @property
    def retention_us(self) -> int:
        return int(self.retention_days * 86_400 * 1_000_000)

    @property
    def reflection_on(self) -> bool:
        return self.reflection if self.reflection is not None else not self.production


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
    parser.add_argument("--listen", help="address to listen on [localhost:50051]")
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
    tls = parser.add_argument_group("transport security and caller authentication")
    tls.add_argument("--tls-cert", help="server certificate chain (PEM); re-read when it changes")
    tls.add_argument("--tls-key", help="server private key (PEM); re-read when it changes")
    tls.add_argument("--client-ca", help="CA bundle that client certificates must chain to (mTLS)")
    tls.add_argument("--allow-plaintext", action="store_true", default=None,
                     help="allow plaintext off loopback (behind a mesh sidecar)")  # fmt: skip
    tls.add_argument("--auth", choices=("none", "mtls", "jwt", "mtls+jwt"),
                     help="how callers are authenticated [none]")  # fmt: skip
    tls.add_argument("--policy", dest="policy_file",
                     help="TOML file mapping identities to tenants and roles (reloaded on change "
                     "and SIGHUP)")  # fmt: skip
    tls.add_argument("--jwt-jwks", help="JWKS file or http(s) URL of the token signing keys")
    tls.add_argument("--jwt-issuer", help="required iss of caller tokens")
    tls.add_argument("--jwt-audience", help="required aud of caller tokens")
    tls.add_argument("--jwt-tenant-claim", help="claim naming the tenant [tenant_id]")
    tls.add_argument("--jwt-user-claim", help="claim naming the user [sub]")
    tls.add_argument("--jwt-roles-claim", help="claim listing roles, jwt mode only [roles]")
    tls.add_argument("--health-listen", help="extra plaintext address serving only health")
    tls.add_argument("--reflection", action="store_true", default=None,
                     help="serve reflection in production too")  # fmt: skip
    tls.add_argument("--no-reflection", dest="reflection", action="store_false",
                     help="do not serve reflection")  # fmt: skip


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
        tls_cert=pick("tls_cert", "TLS_CERT"),
        tls_key=pick("tls_key", "TLS_KEY"),
        client_ca=pick("client_ca", "CLIENT_CA"),
        allow_plaintext=bool(getattr(args, "allow_plaintext", None))
        or _truthy(_env("ALLOW_PLAINTEXT"), defaults.allow_plaintext),
        auth=(pick("auth", "AUTH") or defaults.auth).strip().lower(),
        policy_file=pick("policy_file", "POLICY"),
        jwt_jwks=pick("jwt_jwks", "JWT_JWKS"),
        jwt_issuer=pick("jwt_issuer", "JWT_ISSUER"),
        jwt_audience=pick("jwt_audience", "JWT_AUDIENCE"),
        jwt_tenant_claim=pick("jwt_tenant_claim", "JWT_TENANT_CLAIM") or defaults.jwt_tenant_claim,
        jwt_user_claim=pick("jwt_user_claim", "JWT_USER_CLAIM") or defaults.jwt_user_claim,
        jwt_roles_claim=pick("jwt_roles_claim", "JWT_ROLES_CLAIM") or defaults.jwt_roles_claim,
        jwt_leeway_seconds=float(_env("JWT_LEEWAY_SECONDS") or defaults.jwt_leeway_seconds),
        health_listen=pick("health_listen", "HEALTH_LISTEN"),
        reflection=_reflection(getattr(args, "reflection", None), _env("REFLECTION")),
    )


def _reflection(flag: bool | None, env: str | None) -> bool | None:
    if flag is not None:
        return flag
    return None if env is None else _truthy(env, True)
