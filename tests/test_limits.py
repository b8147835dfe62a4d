"""Limits that hold under abuse: oversized requests are refused before decoding, and a second
server cannot silently share a busy port (only `serve --workers` processes share one)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from mailaccounts_client import AccountClient
from mailaccounts_server.app import create_server
from mailaccounts_server.config import Settings
from mailaccounts_server.credentials import ConfigurationError
from support.factories import SQLITE_ONLY, account_fields, new_caller
from support.grpc_server import ServerThread


@SQLITE_ONLY  # a transport limit: the database plays no part
def test_a_request_over_the_receive_limit_is_refused_and_nothing_is_stored(
    client: AccountClient,
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.create_account(**account_fields(account_name="x" * (70 * 1024)))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert client.list_accounts().total_size == 0


@SQLITE_ONLY
def test_the_receive_limit_is_configurable(
    client: AccountClient, make_server: Callable[..., ServerThread]
) -> None:
    fields = account_fields(password="p" * 1000)  # a valid request of about 1.2 KB
    assert client.create_account(**fields).id  # the default limit takes it
    strict = make_server(max_request_bytes=1024)
    with AccountClient(strict.target, new_caller()) as c, pytest.raises(grpc.RpcError) as info:
        c.create_account(**account_fields(password="p" * 1000))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@SQLITE_ONLY
def test_a_second_server_on_a_busy_port_fails_to_start(
    server: ServerThread, settings: Settings, tmp_path: Path
) -> None:
    second = settings.model_copy(update={"listen": server.target})

    async def start() -> None:
        running = await create_server(second)
        await running.stop(0)

    with pytest.raises(ConfigurationError, match="cannot listen"):
        asyncio.run(start())
