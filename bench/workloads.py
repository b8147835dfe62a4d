"""What each workload sends: request builders, the caller identities and gRPC seeding.

A workload is a `CallFn`: one awaitable RPC that returns the method name it called (the
mixed workload reports latency per method). Failed calls raise `grpc.aio.AioRpcError`.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts.v1 import account_service_pb2_grpc as pb_grpc

from bench.echo_server import ECHO_METHOD

CallFn = Callable[[], Awaitable[str]]
WORKLOADS = ("get", "create", "update", "list", "mixed")
LIST_PAGE_SIZE = 50
# Mixed profile: 80 % GetAccount, 15 % writes (half Create, half Update), 5 % ListAccounts.
MIXED_GET, MIXED_CREATE, MIXED_UPDATE = 0.80, 0.075, 0.075


@dataclass(frozen=True)
class Identity:
    """A caller: sent as x-tenant-id / x-user-id on every call, or as a bearer token only.

    With a token (mtls+jwt mode) the token names tenant and user, so the x- headers are left
    out, as a real client would: the server would only check that they match the token.
    """

    tenant_id: str
    user_id: str
    token: str = field(default="", repr=False)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        if self.token:
            return (("authorization", f"Bearer {self.token}"),)
        return (("x-tenant-id", self.tenant_id), ("x-user-id", self.user_id))


@dataclass(frozen=True)
class Fixture:
    """Seeded data the workloads use.

    `reader` owns `account_ids` (Get, Update and List target them); CreateAccount calls are made
    as `writer`, so creates never grow the reader's list and List stays comparable.
    """

    reader: Identity
    writer: Identity
    account_ids: tuple[str, ...]


_unique = itertools.count()


def create_request(
    *, hostname: str = "imap.example.com", port: int = 993, plain: bool = False
) -> pb.CreateAccountRequest:
    """A valid CreateAccountRequest with a fresh address and request_id (with a password)."""
    n = next(_unique)
    address = f"bench{os.getpid()}-{n}@example.com"
    return pb.CreateAccountRequest(
        account_name=f"Bench {n}",
        email_address=address,
        protocol=pb.PROTOCOL_IMAP,
        hostname=hostname,
        port=port,
        encryption=pb.ENCRYPTION_NONE if plain else pb.ENCRYPTION_TLS,
        username=address,
        password="bench-password",
        is_sync_enabled=True,
        sync_interval=300,
        request_id=str(uuid.uuid4()),
    )


async def seed_accounts(
    channel: grpc.aio.Channel, who: Identity, count: int, *, in_flight: int = 20
) -> list[str]:
    """Creates `count` accounts for `who` through CreateAccount; returns their ids."""
    stub = pb_grpc.AccountServiceStub(channel)
    ids: list[str] = []
    remaining = itertools.count()

    async def worker() -> None:
        while next(remaining) < count:
            reply = await stub.CreateAccount(create_request(), metadata=who.metadata, timeout=30)
            ids.append(reply.id)

    await asyncio.gather(*(worker() for _ in range(min(in_flight, count))))
    return ids


def service_call(
    workload: str, channel: grpc.aio.Channel, fixture: Fixture, *, timeout: float, seed: int
) -> CallFn:
    """The CallFn of one service workload (see WORKLOADS)."""
    stub = pb_grpc.AccountServiceStub(channel)
    rng = random.Random(seed)
    ids = fixture.account_ids
    reader, writer = fixture.reader.metadata, fixture.writer.metadata
    counter = itertools.count()

    async def get() -> str:
        await stub.GetAccount(
            pb.GetAccountRequest(id=rng.choice(ids)), metadata=reader, timeout=timeout
        )
        return "GetAccount"

    async def create() -> str:
        await stub.CreateAccount(create_request(), metadata=writer, timeout=timeout)
        return "CreateAccount"

    async def update() -> str:
        request = pb.UpdateAccountRequest(
            id=rng.choice(ids),
            account_name=f"Renamed {next(counter)}",
            sync_interval=rng.choice((300, 600, 900)),
        )
        await stub.UpdateAccount(request, metadata=reader, timeout=timeout)
        return "UpdateAccount"

    async def list_page() -> str:
        request = pb.ListAccountsRequest(page_size=LIST_PAGE_SIZE)
        await stub.ListAccounts(request, metadata=reader, timeout=timeout)
        return "ListAccounts"

    async def mixed() -> str:
        x = rng.random()
        if x < MIXED_GET:
            return await get()
        if x < MIXED_GET + MIXED_CREATE:
            return await create()
        if x < MIXED_GET + MIXED_CREATE + MIXED_UPDATE:
            return await update()
        return await list_page()

    calls: dict[str, CallFn] = {
        "get": get,
        "create": create,
        "update": update,
        "list": list_page,
        "mixed": mixed,
    }
    if workload not in calls:
        raise ValueError(f"unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
    return calls[workload]


def echo_call(channel: grpc.aio.Channel, who: Identity, *, timeout: float) -> CallFn:
    """The baseline: one unary echo of a GetAccountRequest-sized payload, same metadata."""
    method = channel.unary_unary(ECHO_METHOD)  # type: ignore[call-arg]  # bytes in and out
    payload = pb.GetAccountRequest(id=str(uuid.uuid4())).SerializeToString()

    async def echo() -> str:
        await method(payload, metadata=who.metadata, timeout=timeout)
        return "Echo"

    return echo
