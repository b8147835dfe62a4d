"""The composition root: builds storage, domain, servicer, authentication, health and
reflection from the settings, and runs the server until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts.v1 import account_service_pb2_grpc as pb_grpc
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from mailaccounts_server.config import Settings
from mailaccounts_server.credentials import CredentialCipher, build_cipher
from mailaccounts_server.domain.accounts import AccountManager, now_us
from mailaccounts_server.domain.connection_tests import ConnectionTestRunner
from mailaccounts_server.domain.idempotency import RequestHasher
from mailaccounts_server.domain.maintenance import Maintenance
from mailaccounts_server.domain.pagination import PageTokenCodec
from mailaccounts_server.domain.vault import CredentialVault
from mailaccounts_server.execution import ExecutionPolicy
from mailaccounts_server.mail import MailProber
from mailaccounts_server.storage import counts, migrate, sql_storage
from mailaccounts_server.transport.auth import (
    PolicyStore,
    ReloadingServerCredentials,
    build_authenticator,
    check_security,
)
from mailaccounts_server.transport.interceptors import guard
from mailaccounts_server.transport.servicer import AccountServicer

_LOG = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AccountService"].full_name
T = TypeVar("T")


@dataclass
class Service:
    """The wired domain over one database: what the server and the commands share."""

    execution: ExecutionPolicy
    accounts: AccountManager
    maintenance: Maintenance

    async def close(self) -> None:
        await self.execution.close()


def build_cipher_for(settings: Settings) -> CredentialCipher:
    return build_cipher(
        keys_spec=settings.credential_keys,
        key_file=settings.key_file,
        production=settings.production,
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


async def build_service(settings: Settings, *, migrate_first: bool = False) -> Service:
    """Storage, vault and use cases over the settings' database."""
    cipher = build_cipher_for(settings)
    # Workers of `serve --workers` find the schema migrated by their parent.
    if migrate_first and settings.migrate_on_start and settings.worker_index is None:
        await asyncio.to_thread(migrate_database, settings)
    execution = await ExecutionPolicy.open(
        settings.database_url,
        pool_size=settings.db_pool_size,
        probe_threads=settings.max_tests_total,
    )
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


@dataclass
class RunningServer:
    """A started server and what must be closed with it."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer  # type: ignore[name-defined]
    service: Service
    tester: ConnectionTestRunner
    # The plaintext health-only listener (--health-listen) and its port, when configured.
    health_server: grpc.aio.Server | None = None
    health_port: int | None = None
    policy: PolicyStore | None = None
    policy_watch: asyncio.Task[None] | None = None

    async def stop(self, grace: float | None, *, drain: float = 0.0) -> None:
        """Health NOT_SERVING first, `drain` seconds for load balancers to notice while new
        calls are still served, then `grace` for in-flight calls to finish."""
        await self.health.enter_graceful_shutdown()
        if drain > 0:
            await asyncio.sleep(drain)
        await self.server.stop(grace)
        if self.health_server is not None:
            await self.health_server.stop(0)
        if self.policy_watch is not None:
            self.policy_watch.cancel()
        self.tester.shutdown()
        await self.service.close()


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
    service = await build_service(settings, migrate_first=True)
    prober = MailProber(
        ca_file=settings.ca_file,
        verify_tls=settings.tls_verify,
        allow_networks=settings.allow_networks,
    )
    tester = ConnectionTestRunner(
        service.accounts,
        prober,
        service.execution,
        max_per_tenant=settings.max_tests_per_tenant,
        max_total=settings.max_tests_total,
    )

    server = grpc.aio.server(
        options=[
            # Lets `serve --workers N` processes share the port (the kernel spreads them).
            ("grpc.so_reuseport", 1),
            # One limit, not grpc's soft 8 KiB / hard 16 KiB pair (between the two a call is
            # refused at random): metadata up to 16 KiB reaches the service, so a token over
            # 8 KiB gets its clear UNAUTHENTICATED; beyond that grpc answers RESOURCE_EXHAUSTED.
            ("grpc.max_metadata_size", 16 * 1024),
            ("grpc.absolute_max_metadata_size", 16 * 1024),
        ],
    )
    servicer = guard(
        AccountServicer(service.accounts, tester),
        pb.DESCRIPTOR.services_by_name["AccountService"],
        authenticator,
    )
    pb_grpc.add_AccountServiceServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.reflection_on:
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME),
            server,
        )  # fmt: skip
    if tls is not None:
        port = server.add_secure_port(settings.listen, tls.credentials)
    else:
        port = server.add_insecure_port(settings.listen)
    if port == 0:
        raise OSError(f"cannot listen on {settings.listen}")
    health_server, health_port = None, None
    if settings.health_listen:
        # Probes (kubelet, load balancers) rarely hold client certificates: health alone, in
        # plaintext, on its own port; the same servicer, so both report the same status.
        health_server = grpc.aio.server(
            options=[("grpc.so_reuseport", 1 if settings.workers > 1 else 0)]
        )
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, health_server)
        health_port = health_server.add_insecure_port(settings.health_listen)
        if health_port == 0:
            raise OSError(f"cannot listen on {settings.health_listen}")
        await health_server.start()
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    _LOG.info("listening on %s (port %d, %s, auth %s), database %s", settings.listen, port,
              "mTLS" if settings.client_ca else "TLS" if tls else "plaintext", settings.auth,
              make_url(settings.database_url).render_as_string(hide_password=True))  # fmt: skip
    watch = asyncio.create_task(policy.watch()) if policy is not None else None
    return RunningServer(
        server, port, health_servicer, service, tester,
        health_server=health_server, health_port=health_port, policy=policy, policy_watch=watch,
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
