"""Settings from command-line flags and MAILACCOUNTS_* environment variables (flags win)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from mailaccounts_server.credentials import ConfigurationError

DEFAULT_DATABASE_URL = "sqlite:///mailaccounts.db"
ENV_PREFIX = "MAILACCOUNTS_"

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
AUTH_MODES = ("none", "mtls", "jwt", "mtls+jwt")

# Settings whose environment variable or flag is not derived from the field name.
_ENV_NAMES = {"policy_file": f"{ENV_PREFIX}POLICY"}
_FLAGS = {
    "policy_file": "--policy",
    "allow_networks": "--allow-network",
    "allow_ports": "--allow-port",
    "migrate_on_start": "--no-migrate",
}
# A secret on the command line is visible to every local user in `ps`.
ENV_ONLY = frozenset({"credential_keys"})
# Set by `serve --workers N` for the processes it starts, not by users.
INTERNAL = frozenset({"worker_index"})

# Seconds and days: NaN and infinity pass a `>= 0` check in spirit only, and break arithmetic.
_Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Settings(BaseSettings):
    """Everything the server needs to start; built once in main and passed down."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        # CI and the test suite set MAILACCOUNTS_* variables that are not settings.
        extra="ignore",
        # An empty variable meant "unset" before pydantic-settings; keep it that way.
        env_ignore_empty=True,
        # policy_file is read from MAILACCOUNTS_POLICY, yet code and tests pass it by name.
        populate_by_name=True,
    )

    # Loopback by default: the embedded default serves plaintext without caller authentication,
    # which only a local user may reach. Another address needs TLS or --allow-plaintext.
    listen: str = "localhost:50051"
    database_url: str = DEFAULT_DATABASE_URL
    log_level: str = "INFO"
    # "text" (human lines) or "json" (one object per line, with the call's request id).
    log_format: str = "text"
    # Production refuses to start without configured credential keys (no key file fallback).
    production: bool = False
    # Environment only (no flag): a secret on a command line is visible to everyone in `ps`.
    credential_keys: str | None = Field(default=None, repr=False)
    # None: mailaccounts.key beside the SQLite database file (not in the working directory,
    # which changes between starts); with PostgreSQL, the working directory's, with a warning.
    key_file: Path | None = None
    retention_days: _Seconds = 30.0
    # How often `serve` purges accounts past retention; 0 turns the background purge off.
    purge_interval_seconds: _Seconds = 3600.0
    migrate_on_start: bool = True
    # Database connections per process (PostgreSQL's asyncio pool; idle SQLite ones kept).
    db_pool_size: int = Field(default=10, ge=1)
    # A hung or unreachable database must not hold calls: connecting and each statement wait
    # at most this long (and never past the call's deadline).
    db_connect_timeout_seconds: float = Field(default=5.0, gt=0, allow_inf_nan=False)
    db_statement_timeout_seconds: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    # Start-up with the database down: retry with backoff this long, then exit non-zero.
    db_startup_timeout_seconds: _Seconds = 30.0
    # Health NOT_SERVING after the database has been unreachable this long; 0 (default) never:
    # a database outage would otherwise empty every replica's endpoints at once.
    db_unhealthy_after_seconds: _Seconds = 0.0
    grace_seconds: _Seconds = 10.0
    # After SIGTERM: seconds of NOT_SERVING health while still serving, so load balancers
    # stop sending calls before the listener closes. Set it to the health-check period.
    drain_seconds: _Seconds = 0.0
    # TestConnection: extra CA bundle, deployment-wide TLS verification switch, SSRF allowlist.
    ca_file: str | None = None
    tls_verify: bool = True
    # NoDecode: the variable is a comma-separated list, not the JSON pydantic-settings expects.
    allow_networks: Annotated[tuple[str, ...], NoDecode] = ()
    # Ports TestConnection may reach besides the mail ports: "2525" or a range "10000-10100".
    allow_ports: Annotated[tuple[str, ...], NoDecode] = ()
    # Requests larger than this are refused before they are decoded (no field may exceed 1,024
    # characters, so 64 KiB is generous); calls in progress beyond the cap wait no queue:
    # RESOURCE_EXHAUSTED.
    max_request_bytes: int = Field(default=64 * 1024, ge=1024)
    max_concurrent_rpcs: int = Field(default=1000, ge=1)
    # Per-tenant token buckets by class of call, and a per-account guard on failed password
    # overrides in TestConnection; per replica (size them for N replicas: README). 0 = off.
    rate_reads_per_second: _Seconds = 500.0
    rate_reads_burst: int = Field(default=1000, ge=1)
    rate_writes_per_second: _Seconds = 100.0
    rate_writes_burst: int = Field(default=300, ge=1)
    rate_tests_per_second: _Seconds = 5.0
    rate_tests_burst: int = Field(default=50, ge=1)
    rate_failed_password_overrides_per_hour: int = Field(default=10, ge=0)
    max_tests_per_tenant: int = Field(default=10, ge=1)
    max_tests_total: int = Field(default=200, ge=1)
    # `serve --workers N` runs N server processes on one port (SO_REUSEPORT); a process started
    # by it carries its index, which tells it not to spawn, migrate or (unless 0) purge.
    workers: int = Field(default=1, ge=1)
    worker_index: int | None = Field(default=None, ge=0)
    # Transport security: server TLS (files re-read when they change), and client certificates
    # verified against client_ca (mutual TLS).
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None
    # Plaintext on a non-loopback address, for a mesh whose sidecar terminates mTLS.
    allow_plaintext: bool = False
    # Caller authentication: none | mtls | jwt | mtls+jwt (see transport/auth).
    auth: str = "none"
    # MAILACCOUNTS_POLICY is the documented name; the _FILE spelling matches the field.
    policy_file: str | None = Field(
        default=None,
        validation_alias=AliasChoices(f"{ENV_PREFIX}POLICY", f"{ENV_PREFIX}POLICY_FILE"),
    )
    jwt_jwks: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_tenant_claim: str = "tenant_id"
    jwt_user_claim: str = "sub"
    jwt_roles_claim: str = "roles"
    jwt_leeway_seconds: _Seconds = 30.0
    # A plaintext listener that serves only grpc.health.v1, for probes without certificates.
    health_listen: str | None = None
    # Server reflection; None means on, except with --production.
    reflection: bool | None = None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        if value not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value

    @field_validator("log_format")
    @classmethod
    def _known_log_format(cls, value: str) -> str:
        if value not in ("text", "json"):
            raise ValueError("must be text or json")
        return value

    @field_validator("auth", mode="before")
    @classmethod
    def _lower_auth(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("auth")
    @classmethod
    def _known_auth(cls, value: str) -> str:
        if value not in AUTH_MODES:
            raise ValueError(f"must be one of {', '.join(AUTH_MODES)}")
        return value

    @field_validator("allow_networks", "allow_ports", mode="before")
    @classmethod
    def _split_networks(cls, value: Any) -> Any:
        # The environment gives "a,b"; repeated --allow-network flags give a list.
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, list | tuple):
            stripped = (i.strip() if isinstance(i, str) else i for i in items)
            return tuple(i for i in stripped if i != "")
        return items

    @field_validator("allow_ports")
    @classmethod
    def _port_ranges(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            low, _, high = item.partition("-")
            if not (low.isdigit() and (not high or high.isdigit())):
                raise ValueError(f"{item!r} is not a port or a range such as 10000-10100")
            if not 1 <= int(low) <= int(high or low) <= 65535:
                raise ValueError(f"{item!r} is not within 1-65535")
        return value

    @property
    def allowed_ports(self) -> tuple[int, ...]:
        """The extra ports as numbers, ranges expanded."""
        ports: set[int] = set()
        for item in self.allow_ports:
            low, _, high = item.partition("-")
            ports.update(range(int(low), int(high or low) + 1))
        return tuple(sorted(ports))

    @property
    def retention_us(self) -> int:
        return int(self.retention_days * 86_400 * 1_000_000)

    @property
    def reflection_on(self) -> bool:
        return self.reflection if self.reflection is not None else not self.production


def env_name(field: str) -> str:
    """The environment variable that sets a Settings field."""
    return _ENV_NAMES.get(field, f"{ENV_PREFIX}{field.upper()}")


def flag_name(field: str) -> str | None:
    """The serve flag that sets a Settings field; None for environment-only ones."""
    if field in ENV_ONLY or field in INTERNAL:
        return None
    return _FLAGS.get(field, "--" + field.replace("_", "-"))


def _default(field: str) -> str:
    value = Settings.model_fields[field].default
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags every subcommand understands (they all need the database and keys)."""
    parser.add_argument("--database-url", help=f"SQLAlchemy URL [{DEFAULT_DATABASE_URL}]")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR [INFO]")
    parser.add_argument("--log-format", help="text or json (one object per line) [text]")
    parser.add_argument(
        "--key-file",
        help="credential key file, when MAILACCOUNTS_CREDENTIAL_KEYS is unset "
        "[mailaccounts.key beside the SQLite database]",
    )
    parser.add_argument("--production", action="store_true", default=None,
                        help="refuse to start without MAILACCOUNTS_CREDENTIAL_KEYS")  # fmt: skip
    # Values stay strings here: Settings validates them, with errors that name the setting.
    parser.add_argument(
        "--retention-days",
        metavar="DAYS",
        help=f"soft-deleted accounts stay restorable this long [{_default('retention_days')}]",
    )


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", help="address to listen on [localhost:50051]")
    parser.add_argument(
        "--no-migrate",
        dest="migrate_on_start",
        action="store_false",
        default=None,
        help="do not apply database migrations at start-up",
    )
    parser.add_argument("--ca-file", help="extra CA bundle trusted by TestConnection")
    parser.add_argument("--workers", help="server processes sharing the port (SO_REUSEPORT) [1]")
    parser.add_argument(
        "--allow-network",
        dest="allow_networks",
        metavar="ALLOW_NETWORK",
        action="append",
        help="CIDR that TestConnection may reach despite the SSRF guard",
    )
    parser.add_argument(
        "--allow-port",
        dest="allow_ports",
        metavar="PORT",
        action="append",
        help="a port (or range, 10000-10100) TestConnection may reach besides the mail ports",
    )
    parser.add_argument(
        "--tls-verify",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="verify mail server certificates in TestConnection [on]",
    )
    parser.add_argument(
        "--max-tests-per-tenant",
        metavar="N",
        help=f"concurrent TestConnection calls per tenant [{_default('max_tests_per_tenant')}]",
    )
    parser.add_argument(
        "--max-tests-total",
        metavar="N",
        help=f"concurrent TestConnection calls per process [{_default('max_tests_total')}]",
    )
    parser.add_argument(
        "--purge-interval-seconds",
        metavar="SECONDS",
        help="how often accounts past retention are purged; 0 turns it off "
        f"[{_default('purge_interval_seconds')}]",
    )
    parser.add_argument(
        "--db-pool-size",
        metavar="N",
        help="database connections per process (as many again may overflow) "
        f"[{_default('db_pool_size')}]",
    )
    for flag, text in (
        ("--db-connect-timeout-seconds", "longest wait for a database connection"),
        ("--db-statement-timeout-seconds", "longest wait for one database statement"),
        ("--db-startup-timeout-seconds", "how long start-up retries an unreachable database"),
        ("--db-unhealthy-after-seconds", "health NOT_SERVING after the database has been "
         "unreachable this long; 0 never"),
    ):  # fmt: skip
        name = flag[2:].replace("-", "_")
        parser.add_argument(flag, metavar="SECONDS", help=f"{text} [{_default(name)}]")
    for flag, text in (
        ("--rate-reads-per-second", "reads per tenant per second (0: no limit)"),
        ("--rate-reads-burst", "reads per tenant in a burst"),
        ("--rate-writes-per-second", "writes per tenant per second (0: no limit)"),
        ("--rate-writes-burst", "writes per tenant in a burst"),
        ("--rate-tests-per-second", "connection tests per tenant per second (0: no limit)"),
        ("--rate-tests-burst", "connection tests per tenant in a burst"),
        ("--rate-failed-password-overrides-per-hour",
         "failed TestConnection password overrides per account per hour (0: no limit)"),
    ):  # fmt: skip
        name = flag[2:].replace("-", "_")
        parser.add_argument(flag, metavar="N", help=f"{text} [{_default(name)}]")
    parser.add_argument(
        "--max-request-bytes",
        metavar="N",
        help=f"largest request accepted, in bytes [{_default('max_request_bytes')}]",
    )
    parser.add_argument(
        "--max-concurrent-rpcs",
        metavar="N",
        help="calls served at once; more get RESOURCE_EXHAUSTED "
        f"[{_default('max_concurrent_rpcs')}]",
    )
    parser.add_argument(
        "--grace-seconds",
        metavar="SECONDS",
        help=f"time in-flight calls get to finish on SIGTERM [{_default('grace_seconds')}]",
    )
    parser.add_argument(
        "--drain-seconds",
        metavar="SECONDS",
        help="NOT_SERVING health before the listener closes on SIGTERM; set to "
        f"the health-check period [{_default('drain_seconds')}]",
    )
    tls = parser.add_argument_group("transport security and caller authentication")
    tls.add_argument("--tls-cert", help="server certificate chain (PEM); re-read when it changes")
    tls.add_argument("--tls-key", help="server private key (PEM); re-read when it changes")
    tls.add_argument("--client-ca", help="CA bundle that client certificates must chain to (mTLS)")
    tls.add_argument("--allow-plaintext", action="store_true", default=None,
                     help="allow plaintext off loopback (behind a mesh sidecar)")  # fmt: skip
    tls.add_argument("--auth", choices=AUTH_MODES,
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
    tls.add_argument(
        "--jwt-leeway-seconds",
        metavar="SECONDS",
        help="clock skew tolerated on token expiry and not-before "
        f"[{_default('jwt_leeway_seconds')}]",
    )
    tls.add_argument("--health-listen", help="extra plaintext address serving only health")
    tls.add_argument("--reflection", action="store_true", default=None,
                     help="serve reflection in production too")  # fmt: skip
    tls.add_argument("--no-reflection", dest="reflection", action="store_false",
                     help="do not serve reflection")  # fmt: skip


def settings_from(args: argparse.Namespace) -> Settings:
    """Merges flags over environment variables over defaults.

    Raises ConfigurationError, naming the variable and flag, for a value that does not validate.
    """
    # Flags left out are None; only given ones go in, as init values beat the environment.
    given = {
        name: value
        for name, value in vars(args).items()
        if name in Settings.model_fields and name not in ENV_ONLY and value is not None
    }
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc)) from None
    except SettingsError as exc:  # a variable pydantic-settings could not even parse
        raise ConfigurationError(str(exc)) from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        field = _field_of(error["loc"][0] if error["loc"] else "")
        flag = flag_name(field) if field else None
        name = env_name(field) if field else "settings"
        where = f"{name} ({flag})" if flag else name
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)


def _field_of(loc: int | str) -> str | None:
    """The field an error location names (a field name, or an alias such as the env name)."""
    if loc in Settings.model_fields:
        return str(loc)
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices) and loc in alias.choices:
            return name
    return None
