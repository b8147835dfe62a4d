"""TestConnection over gRPC: mail-server failures come back as results with an error code,
while bad requests and foreign or missing accounts fail the RPC."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import grpc
import pytest
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts_client import AccountClient
from support.dovecot import DovecotServer
from support.factories import (
    LOOPBACK,
    SQLITE_ONLY,
    account_fields,
    bad_request_fields,
    expect_error,
    new_caller,
    port_account,
)
from support.grpc_server import ServerThread


def imaps_account(client: AccountClient, dovecot: DovecotServer, hostname: str) -> pb.Account:
    """An IMAPS account of Dovecot's first user with the right password."""
    return client.create_account(
        **account_fields(
            hostname=hostname,
            port=dovecot.imaps,
            username=dovecot.user,
            password=dovecot.password,
        )
    )


# -- failures are results -------------------------------------------------------------------


@SQLITE_ONLY
def test_closed_port_is_connection_refused(
    loopback_client: AccountClient, closed_port: int
) -> None:
    account = port_account(loopback_client, closed_port)
    result = loopback_client.test_connection(account.id, timeout_seconds=5)
    assert result.success is False
    assert result.error_code == pb.CONNECTION_ERROR_CODE_CONNECTION_REFUSED
    assert result.message == f"Connection refused by 127.0.0.1:{closed_port}"
    assert result.server == f"127.0.0.1:{closed_port}"


@SQLITE_ONLY
def test_silent_server_times_out_within_a_second_of_the_limit(
    loopback_client: AccountClient, blackhole_port: int
) -> None:
    account = port_account(loopback_client, blackhole_port)
    started = time.monotonic()
    result = loopback_client.test_connection(account.id, timeout_seconds=1)
    elapsed = time.monotonic() - started
    assert result.success is False
    assert result.error_code == pb.CONNECTION_ERROR_CODE_TIMEOUT
    assert "Timed out" in result.message
    assert 1.0 <= elapsed < 1.0 + 1.0, elapsed


@SQLITE_ONLY
def test_short_rpc_deadline_gives_a_timeout_result_not_deadline_exceeded(
    loopback_client: AccountClient, blackhole_port: int
) -> None:
    account = port_account(loopback_client, blackhole_port)
    started = time.monotonic()
    result = loopback_client.test_connection(account.id, timeout_seconds=30, timeout=2.5)
    elapsed = time.monotonic() - started
    assert result.error_code == pb.CONNECTION_ERROR_CODE_TIMEOUT
    assert result.success is False
    assert elapsed < 2.5, elapsed


@SQLITE_ONLY
def test_certificate_from_another_ca_is_tls_failure(
    make_server: Callable[..., ServerThread], dovecot: DovecotServer
) -> None:
    server = make_server(allow_networks=LOOPBACK, ca_file=str(dovecot.other_ca_file))
    with AccountClient(server.target, new_caller()) as client:
        account = imaps_account(client, dovecot, "localhost")
        result = client.test_connection(account.id, timeout_seconds=10)
    assert result.success is False
    assert result.error_code == pb.CONNECTION_ERROR_CODE_TLS_FAILURE
    assert result.message.startswith("TLS certificate verification failed")


@SQLITE_ONLY
@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1"])
def test_loopback_target_is_blocked_without_allow_list(
    client: AccountClient, dovecot: DovecotServer, hostname: str
) -> None:
    account = imaps_account(client, dovecot, hostname)
    result = client.test_connection(account.id, timeout_seconds=10)
    assert result.success is False
    assert result.error_code == pb.CONNECTION_ERROR_CODE_ADDRESS_BLOCKED
    assert "internal address that may not be probed" in result.message
    assert hostname in result.message


# -- bad requests and ownership -------------------------------------------------------------


@SQLITE_ONLY
@pytest.mark.parametrize("timeout_seconds", [0, 121, -1])
def test_timeout_out_of_range_is_invalid(client: AccountClient, timeout_seconds: int) -> None:
    account = client.create_account(**account_fields())
    err = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.test_connection,
        account.id,
        timeout_seconds=timeout_seconds,
    )
    assert "timeoutSeconds" in bad_request_fields(err)
    assert "timeoutSeconds" in err.details()


@SQLITE_ONLY
def test_empty_request_password_is_invalid(client: AccountClient) -> None:
    account = client.create_account(**account_fields())
    err = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT, client.test_connection, account.id, password=""
    )
    assert "password" in bad_request_fields(err)


def test_unknown_account_is_not_found(client: AccountClient) -> None:
    err = expect_error(grpc.StatusCode.NOT_FOUND, client.test_connection, str(uuid.uuid4()))
    assert "not found" in err.details()


@SQLITE_ONLY
def test_another_tenants_account_is_denied(client: AccountClient) -> None:
    account = client.create_account(**account_fields())
    stranger = client.as_caller(new_caller())
    expect_error(grpc.StatusCode.PERMISSION_DENIED, stranger.test_connection, account.id)


def test_deleted_account_is_not_found(client: AccountClient) -> None:
    account = client.create_account(**account_fields())
    client.delete_account(account.id)
    expect_error(grpc.StatusCode.NOT_FOUND, client.test_connection, account.id)
