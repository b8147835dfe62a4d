"""Builds the server: storage, domain, servicer, interceptors, health and reflection."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts.v1 import account_service_pb2_grpc as pb_grpc

from mailaccounts_server.concurrency import InlineFirstRunner, InlineRunner, ThreadRunner
from mailaccounts_server.config import Settings
from mailaccounts_server.credentials import CredentialCipher, build_cipher
from mailaccounts_server.domain import maintenance
from mailaccounts_server.domain.accounts import AccountManager, now_us
from mailaccounts_server.domain.connection_tests import ConnectionTestRunner
from mailaccounts_server.domain.pagination import PageTokenCodec
from mailaccounts_server.mail import MailProber
from mailaccounts_server.storage import counts, migrate
from mailaccounts_server.storage.database import Database
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


@dataclass
class RunningServer:
    """A started server and what must be closed with it."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer  # type: ignore[name-defined]
    database: Database
    run_db: ThreadRunner
    tester: ConnectionTestRunner
    run_scan: ThreadRunner
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
        self.run_db.shutdown()
        self.run_scan.shutdown()
        self.database.dispose()


def build_cipher_for(settings: Settings) -> CredentialCipher:
    return build_cipher(
        keys_spec=settings.credential_keys,
        key_file=settings.key_file,
        production=settings.production,
    )


def open_database(settings: Settings) -> Database:
    db = Database(settings.database_url, pool_size=settings.db_pool_size)
    # Workers of `serve --workers` find the schema migrated by their parent.
    if settings.migrate_on_start and settings.worker_index is None:
        migrate.upgrade(db.engine)
    return db


def prepare(settings: Settings) -> None:
    """What `serve --workers` does once before starting workers: keys and migrations."""
    build_cipher_for(settings)
    open_database(settings).dispose()


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
    cipher = build_cipher_for(settings)
    db = open_database(settings)
    # SQLite has one writer at a time, so one thread does every write (more threads would only
    # queue on the lock and fight over the GIL); PostgreSQL writes in parallel.
    run_db = ThreadRunner(1 if db.is_sqlite else settings.db_threads, "db")
    accounts = AccountManager(
        db,
        cipher,
        PageTokenCodec(cipher.derive_secrets("page-token")),
        retention_us=settings.retention_us,
        request_hash_keys=cipher.derive_secrets("request-hash"),
    )
    prober = MailProber(
        ca_file=settings.ca_file,
        verify_tls=settings.tls_verify,
        allow_networks=settings.allow_networks,
    )
    # SQLite readers in WAL mode never wait, so they skip the thread hop, and so do writers
    # while nobody else holds the write lock; PostgreSQL waits on the network, so its calls
    # stay off the event loop.
    run_read = InlineRunner() if db.is_sqlite else run_db
    # Filtered lists scan an owner's rows; SQLite releases the GIL while it does, so a second
    # pool keeps a large tenant's scan from stalling the loop or queueing behind writes.
    run_scan = ThreadRunner(2, "db-scan") if db.is_sqlite else run_db
    run_write = InlineFirstRunner(run_db) if db.is_sqlite else run_db
    tester = ConnectionTestRunner(
        accounts,
        prober,
        run_read=run_read,
        run_write=run_write,
        max_per_tenant=settings.max_tests_per_tenant,
        max_total=settings.max_tests_total,
    )

    server = grpc.aio.server(
        # Lets `serve --workers N` processes share the port (the kernel spreads connections).
        options=[("grpc.so_reuseport", 1)],
    )
    servicer = guard(
        AccountServicer(
            accounts,
            tester,
            run_write=run_write,
            run_read=run_read,
            run_scan=run_scan,
        ),
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
              db.engine.url.render_as_string(hide_password=True))  # fmt: skip
    watch = asyncio.create_task(policy.watch()) if policy is not None else None
    return RunningServer(
        server, port, health_servicer, db, run_db, tester, run_scan,
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
    """Background purge of accounts past retention, one batch per database call so that the
    database threads stay available. Every replica may run it: the deletes are idempotent."""
    while True:
        await asyncio.sleep(settings.purge_interval_seconds)
        try:
            while await running.run_db(
                maintenance.purge_expired,
                running.database,
                now_us=now_us(),
                retention_us=settings.retention_us,
                max_batches=1,
            ):
                pass
        except Exception:
            _LOG.exception("background purge failed; retrying at the next interval")


def purge_once(settings: Settings) -> int:
    """One purge pass (the `purge` command; schedule it, e.g. daily, from cron or a job)."""
    db = open_database(settings)
    try:
        return maintenance.purge_expired(db, now_us=now_us(), retention_us=settings.retention_us)
    finally:
        db.dispose()


def rotate_keys(settings: Settings) -> tuple[int, int]:
    """Re-encrypts credentials with the primary key (the `rotate-keys` command)."""
    cipher = build_cipher_for(settings)
    db = open_database(settings)
    try:
        return maintenance.reencrypt_credentials(db, cipher, now_us=now_us())
    finally:
        db.dispose()


def recount(settings: Settings) -> None:
    """Rebuilds the per-owner counters (the `recount` command)."""
    db = open_database(settings)
    try:
        with db.transaction() as tx:
            counts.recount_all(tx)
    finally:
        db.dispose()
