"""The composition root: builds storage, domain, servicer, authentication, health and
reflection from the settings, and runs the server until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from mailaccounts.v1 import account_service_pb2 as pb
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError as SQLAlchemyOperationalError

from mailaccounts_server.config import Settings
from mailaccounts_server.credentials import ConfigurationError, CredentialCipher, build_cipher
from mailaccounts_server.credentials.startup import check_stored_keys, resolve_key_file
from mailaccounts_server.domain.accounts import AccountManager, now_us
from mailaccounts_server.domain.connection_tests import ConnectionTestRunner
from mailaccounts_server.domain.idempotency import RequestHasher
from mailaccounts_server.domain.maintenance import Maintenance
from mailaccounts_server.domain.pagination import PageTokenCodec
from mailaccounts_server.domain.ports import StorageUnavailable
from mailaccounts_server.domain.vault import CredentialVault
from mailaccounts_server.execution import ExecutionPolicy
from mailaccounts_server.mail import MailProber
from mailaccounts_server.storage import Limits, counts, migrate, sql_storage
from mailaccounts_server.transport.auth import (
    PolicyStore,
    ReloadingServerCredentials,
    build_authenticator,
    check_security,
)
from mailaccounts_server.transport.interceptors import guard
from mailaccounts_server.transport.ratelimit import RateLimiter, RateLimits
from mailaccounts_server.transport.servicer import AccountServicer
from mailaccounts_server.transport.shutdown import CallTracker

_LOG = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AccountService"].full_name
T = TypeVar("T")
# Shutdown: how long calls gRPC has just accepted get to reach their handlers, and how long cut
# connection tests get to record their result.
_SETTLE_S = 0.1
_CUT_PROBES_S = 5.0


@dataclass
class Service:
    """The wired domain over one database: what the server and the commands share."""

    execution: ExecutionPolicy
    accounts: AccountManager
    maintenance: Maintenance

    async def close(self) -> None:
        await self.execution.close()


def build_cipher_for(settings: Settings) -> CredentialCipher:
    """The keyring: MAILACCOUNTS_CREDENTIAL_KEYS, else the configured key file, else (outside
    production) mailaccounts.key beside the SQLite database."""
    key_file = resolve_key_file(
        settings.database_url,
        settings.key_file,
        production=settings.production,
        keys_spec=settings.credential_keys,
    )
    return build_cipher(
        keys_spec=settings.credential_keys, key_file=key_file, production=settings.production
    )


def migrate_database(settings: Settings) -> None:
    """Applies the Alembic migrations (a short-lived synchronous engine: Alembic is sync).
    On PostgreSQL, replicas starting together serialise on an advisory lock."""
    engine = create_engine(settings.database_url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()


def prepare(settings: Settings) -> None:
    """What `serve --workers` does once before starting workers: keys and migrations."""
    build_cipher_for(settings)
    if settings.migrate_on_start:
        migrate_database(settings)


async def build_service(
    settings: Settings, *, migrate_first: bool = False, check_keys: bool = False
) -> Service:
    """Storage, vault and use cases over the settings' database."""
    cipher = build_cipher_for(settings)
    # Workers of `serve --workers` find the schema migrated by their parent.
    migrate = migrate_first and settings.migrate_on_start and settings.worker_index is None
    execution = await _open_with_retry(settings, migrate=migrate)
    if check_keys:
        # After the migrations (the table exists): a server whose keys open no stored
        # credential refuses to start. rotate-keys reports unreadable credentials itself.
        try:
            await asyncio.to_thread(check_stored_keys, settings.database_url, cipher)
        except BaseException:
            await execution.close()
            raise
    storage = sql_storage()
    vault = CredentialVault(cipher, storage.credentials, storage.accounts)
    accounts = AccountManager(
        execution,
        storage,
        vault,
        PageTokenCodec(cipher.derive_secrets("page-token")),
        RequestHasher(cipher.derive_secrets("request-hash")),
        retention_us=settings.retention_us,
    )
    return Service(execution, accounts, Maintenance(execution, storage, vault))


class DatabaseUnreachableError(RuntimeError):
    """The database stayed unreachable through the whole start-up retry period."""


async def _open_with_retry(settings: Settings, *, migrate: bool) -> ExecutionPolicy:
    """Migrates (when asked) and connects, retrying with backoff while the database is down
    (a replica starting during a database failover), up to db_startup_timeout_seconds."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + settings.db_startup_timeout_seconds
    delay, attempt = 0.5, 0
    limits = Limits(
        connect_timeout=settings.db_connect_timeout_seconds,
        statement_timeout=settings.db_statement_timeout_seconds,
        pool_size=settings.db_pool_size,
    )
    while True:
        attempt += 1
        try:
            if migrate:
                await asyncio.to_thread(migrate_database, settings)
            return await ExecutionPolicy.open(
                settings.database_url, limits=limits, probe_threads=settings.max_tests_total
            )
        except (StorageUnavailable, SQLAlchemyOperationalError, OSError) as exc:
            reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else repr(exc)
            if loop.time() + delay > give_up:
                raise DatabaseUnreachableError(
                    f"database unreachable at start-up after {attempt} attempts "
                    f"({settings.db_startup_timeout_seconds:g}s): {reason}"
                ) from None
            _LOG.warning("database not reachable yet (attempt %d: %s); retrying in %.1fs",
                         attempt, reason, delay)  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


@dataclass
class RunningServer:
    """A started server and what must be closed with it."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer  # type: ignore[name-defined]
    service: Service
    tester: ConnectionTestRunner
    calls: CallTracker
    # The plaintext health-only listener (--health-listen) and its port, when configured.
    health_server: grpc.aio.Server | None = None
    health_port: int | None = None
    policy: PolicyStore | None = None
    policy_watch: asyncio.Task[None] | None = None
    db_health: asyncio.Task[None] | None = None

    async def stop(self, grace: float | None, *, drain: float = 0.0) -> None:
        """Health NOT_SERVING first; `drain` seconds for load balancers to notice while new
        calls are still served; then new calls get UNAVAILABLE while those in progress get
        `grace` seconds to finish. Connection tests still running then are cut and recorded;
        calls still running after that answer UNAVAILABLE (retryable), never CANCELLED."""
        await self.health.enter_graceful_shutdown()
        if drain > 0:
            await asyncio.sleep(drain)
        # Calls gRPC accepted a moment ago may not have reached their handler yet: let them.
        await asyncio.sleep(_SETTLE_S)
        self.calls.refuse()
        if not await self.calls.wait_idle(grace or 0.0):
            self.tester.shutdown()  # cut probes answer at once, with their result recorded
            if not await self.calls.wait_idle(_CUT_PROBES_S):
                self.calls.cut()
                await self.calls.wait_idle(_CUT_PROBES_S)
        self.tester.shutdown()
        await self.tester.wait_recorded(_CUT_PROBES_S)
        await self.server.stop(0)
        if self.health_server is not None:
            await self.health_server.stop(0)
        for task in (self.policy_watch, self.db_health):
            if task is not None:
                task.cancel()
        await self.service.close()


def _listen(
    server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None
) -> int:
    """Binds `address`; a port another process holds is a start-up error, never shared."""
    try:
        if credentials is not None:
            port = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if port == 0:
        raise ConfigurationError(
            f"cannot listen on {address}: the port is in use or the address is not this machine's"
        )
    return port


async def create_server(settings: Settings) -> RunningServer:
    """Builds and starts the server; `settings.listen` may use port 0 (tests read `.port`)."""
    for warning in check_security(settings):
        _LOG.warning("%s", warning)
    authenticator, policy = build_authenticator(settings)
    tls = (
        ReloadingServerCredentials(settings.tls_cert, settings.tls_key, settings.client_ca)
        if settings.tls_cert and settings.tls_key
        else None
    )
    service = await build_service(settings, migrate_first=True, check_keys=True)
    prober = MailProber(
        ca_file=settings.ca_file,
        verify_tls=settings.tls_verify,
        allow_networks=settings.allow_networks,
        allow_ports=settings.allowed_ports,
    )
    tester = ConnectionTestRunner(
        service.accounts,
        prober,
        service.execution,
        max_per_tenant=settings.max_tests_per_tenant,
        max_total=settings.max_tests_total,
    )

    shared_port = settings.workers > 1 or settings.worker_index is not None
    server = grpc.aio.server(
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        options=[
            # Only `serve --workers N` processes share a port (the kernel spreads connections
            # over them); otherwise a second server on a busy port must fail, not take half
            # the traffic.
            ("grpc.so_reuseport", 1 if shared_port else 0),
            # Refused before decoding: a flood of large requests cannot balloon memory.
            ("grpc.max_receive_message_length", settings.max_request_bytes),
            # One limit, not grpc's soft 8 KiB / hard 16 KiB pair (between the two a call is
            # refused at random): metadata up to 16 KiB reaches the service, so a token over
            # 8 KiB gets its clear UNAUTHENTICATED; beyond that grpc answers RESOURCE_EXHAUSTED.
            ("grpc.max_metadata_size", 16 * 1024),
            ("grpc.absolute_max_metadata_size", 16 * 1024),
        ],
    )
    calls = CallTracker()
    limiter = RateLimiter(
        RateLimits(
            reads_per_second=settings.rate_reads_per_second,
            reads_burst=settings.rate_reads_burst,
            writes_per_second=settings.rate_writes_per_second,
            writes_burst=settings.rate_writes_burst,
            tests_per_second=settings.rate_tests_per_second,
            tests_burst=settings.rate_tests_burst,
            failed_password_overrides_per_hour=settings.rate_failed_password_overrides_per_hour,
        )
    )
    servicer = guard(
        AccountServicer(service.accounts, tester, limiter),
        pb.DESCRIPTOR.services_by_name["AccountService"],
        authenticator,
        calls,
        limiter,
    )
    server.add_generic_rpc_handlers((servicer,))
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.reflection_on:
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME),
            server,
        )  # fmt: skip
    try:
        port = _listen(server, settings.listen, tls.credentials if tls is not None else None)
    except ConfigurationError:
        await service.close()
        raise
    health_server, health_port = None, None
    if settings.health_listen:
        # Probes (kubelet, load balancers) rarely hold client certificates: health alone, in
        # plaintext, on its own port; the same servicer, so both report the same status.
        health_server = grpc.aio.server(
            options=[("grpc.so_reuseport", 1 if settings.workers > 1 else 0)]
        )
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, health_server)
        try:
            health_port = _listen(health_server, settings.health_listen, None)
        except ConfigurationError:
            await service.close()
            raise
        await health_server.start()
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    _LOG.info("listening on %s (port %d, %s, auth %s), database %s", settings.listen, port,
              "mTLS" if settings.client_ca else "TLS" if tls else "plaintext", settings.auth,
              make_url(settings.database_url).render_as_string(hide_password=True))  # fmt: skip
    watch = asyncio.create_task(policy.watch()) if policy is not None else None
    db_health = (
        asyncio.create_task(_report_database_health(service, health_servicer, settings))
        if settings.db_unhealthy_after_seconds > 0
        else None
    )
    return RunningServer(
        server, port, health_servicer, service, tester, calls,
        health_server=health_server, health_port=health_port, policy=policy, policy_watch=watch,
        db_health=db_health,
    )  # fmt: skip


async def serve(settings: Settings) -> None:
    """Runs until SIGTERM or SIGINT, then shuts down gracefully."""
    running = await create_server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # SIGHUP reloads the policy; without one it is ignored rather than ending the process.
    policy = running.policy
    loop.add_signal_handler(
        signal.SIGHUP,
        policy.reload if policy is not None else lambda: _LOG.info("SIGHUP: no policy to reload"),
    )
    purger = (
        asyncio.create_task(_purge_periodically(running, settings))
        if settings.purge_interval_seconds > 0 and not settings.worker_index
        else None
    )
    await stop.wait()
    _LOG.info("shutting down (grace %.1fs)", settings.grace_seconds)
    if purger is not None:
        purger.cancel()
    await running.stop(settings.grace_seconds, drain=settings.drain_seconds)
    _LOG.info("stopped")


async def _report_database_health(
    service: Service, health_servicer: Any, settings: Settings
) -> None:
    """Health NOT_SERVING once the database has been unreachable for longer than
    db_unhealthy_after_seconds, SERVING again when it answers."""
    db = service.execution.db
    threshold = settings.db_unhealthy_after_seconds
    serving = True
    while True:
        await asyncio.sleep(min(1.0, threshold / 2))
        # A ping each interval: an idle replica notices the outage too, and its end.
        await db.ping()
        healthy = db.reachability.down_for() < threshold
        if healthy != serving:
            serving = healthy
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if healthy
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            _LOG.warning(
                "health %s: the database is %s",
                "SERVING" if healthy else "NOT_SERVING",
                "reachable" if healthy else f"unreachable for over {threshold:g}s",
            )
            for name in ("", SERVICE_NAME):
                await health_servicer.set(name, status)


async def _purge_periodically(running: RunningServer, settings: Settings) -> None:
    """Background purge of accounts past retention, one batch per transaction so that no lock
    is held for long. Every replica may run it: the deletes are idempotent."""
    maintenance = running.service.maintenance
    while True:
        await asyncio.sleep(settings.purge_interval_seconds)
        try:
            while await maintenance.purge_expired(
                now_us=now_us(), retention_us=settings.retention_us, max_batches=1
            ):
                pass
        except Exception:
            _LOG.exception("background purge failed; retrying at the next interval")


async def _on_service(settings: Settings, work: Callable[[Service], Awaitable[T]]) -> T:
    service = await build_service(settings)
    try:
        return await work(service)
    finally:
        await service.close()


def purge_once(settings: Settings, *, at_us: int | None = None) -> int:
    """One purge pass (the `purge` command; schedule it, e.g. daily, from cron or a job).
    `at_us` purges as if it were that time (tests)."""
    when = at_us if at_us is not None else now_us()
    return asyncio.run(
        _on_service(
            settings,
            lambda s: s.maintenance.purge_expired(now_us=when, retention_us=settings.retention_us),
        )
    )


def rotate_keys(settings: Settings) -> tuple[int, int]:
    """Re-seals credentials with the primary key (the `rotate-keys` command)."""
    return asyncio.run(
        _on_service(settings, lambda s: s.maintenance.reseal_credentials(now_us=now_us()))
    )


def recount(settings: Settings) -> None:
    """Rebuilds the per-owner counters (the `recount` command)."""

    async def work(service: Service) -> None:
        async with service.execution.write() as tx:
            await counts.recount_all(tx)

    asyncio.run(_on_service(settings, work))
