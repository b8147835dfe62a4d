"""TestConnection over gRPC against the real Dovecot: every mode with the stored credential,
what IMAP and POP3 report, and the request password. Failures and bad requests are in
test_connection_rpc_errors.py; recording, caps and isolation in test_connection_rpc_outcomes.py."""

from __future__ import annotations

import poplib
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from imapclient import IMAPClient
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts_client import AccountClient
from support.dovecot import DovecotServer
from support.factories import LOOPBACK, SQLITE_ONLY, account_fields, new_caller
from support.grpc_server import ServerThread

WRONG_PASSWORD = "Not-the-right-0ne"
PORT_NAMES: dict[tuple[int, int], str] = {
    (pb.PROTOCOL_IMAP, pb.ENCRYPTION_TLS): "imaps",
    (pb.PROTOCOL_IMAP, pb.ENCRYPTION_STARTTLS): "imap",
    (pb.PROTOCOL_IMAP, pb.ENCRYPTION_NONE): "imap",
    (pb.PROTOCOL_POP3, pb.ENCRYPTION_TLS): "pop3s",
    (pb.PROTOCOL_POP3, pb.ENCRYPTION_STARTTLS): "pop3",
    (pb.PROTOCOL_POP3, pb.ENCRYPTION_NONE): "pop3",
}
MODE_IDS = ["imaps", "imap-starttls", "imap-plain", "pop3s", "pop3-stls", "pop3-plain"]
UNSPECIFIED = pb.CONNECTION_ERROR_CODE_UNSPECIFIED


def dovecot_account(
    client: AccountClient,
    dovecot: DovecotServer,
    protocol: int = pb.PROTOCOL_IMAP,
    encryption: int = pb.ENCRYPTION_TLS,
    *,
    password: str | None = None,
    hostname: str = "localhost",
) -> pb.Account:
    """An account of Dovecot's first user, stored with `password` (default: the right one)."""
    return client.create_account(
        **account_fields(
            protocol=protocol,
            encryption=encryption,
            hostname=hostname,
            port=dovecot.ports[PORT_NAMES[(protocol, encryption)]],
            username=dovecot.user,
            password=dovecot.password if password is None else password,
        )
    )


@pytest.fixture
def mail_server(make_server: Callable[..., ServerThread], dovecot: DovecotServer) -> ServerThread:
    """A server that may reach loopback and trusts the Dovecot test CA."""
    return make_server(allow_networks=LOOPBACK, ca_file=str(dovecot.ca_file))


@pytest.fixture
def mail_client(mail_server: ServerThread) -> Iterator[AccountClient]:
    with AccountClient(mail_server.target, new_caller()) as c:
        yield c


# -- every mode, stored credential ----------------------------------------------------------


@SQLITE_ONLY
@pytest.mark.parametrize(("protocol", "encryption"), list(PORT_NAMES), ids=MODE_IDS)
def test_stored_credential_logs_in_over_every_mode(
    mail_client: AccountClient, dovecot: DovecotServer, protocol: int, encryption: int
) -> None:
    account = dovecot_account(mail_client, dovecot, protocol, encryption)
    before = time.time()
    result = mail_client.test_connection(account.id, timeout_seconds=10)
    assert result.success, result.message
    assert result.error_code == UNSPECIFIED
    assert result.message == "Connection successful"
    assert result.server == f"localhost:{account.port}"
    assert result.protocol == protocol
    assert before - 1 <= result.timestamp.ToMicroseconds() / 1e6 <= time.time() + 1


@SQLITE_ONLY
def test_ip_literal_host_is_reported_as_tested(
    mail_client: AccountClient, dovecot: DovecotServer
) -> None:
    account = dovecot_account(mail_client, dovecot, hostname="127.0.0.1")
    result = mail_client.test_connection(account.id, timeout_seconds=10)
    assert result.success, result.message
    assert result.server == f"127.0.0.1:{dovecot.imaps}"


# -- what IMAP and POP3 report --------------------------------------------------------------


def _real_imap_folders(dovecot: DovecotServer) -> list[tuple[Any, Any, str]]:
    context = ssl.create_default_context(cafile=dovecot.ca_file)
    with IMAPClient("localhost", port=dovecot.imaps, ssl_context=context, timeout=10) as imap:
        imap.login(dovecot.user, dovecot.password)
        folders: list[tuple[Any, Any, str]] = imap.list_folders()
        return folders


def _real_pop3_stat(dovecot: DovecotServer) -> tuple[int, int]:
    pop = poplib.POP3("127.0.0.1", dovecot.pop3, timeout=10)
    try:
        pop.user(dovecot.user)
        pop.pass_(dovecot.password)
        count, size = pop.stat()
        return count, size
    finally:
        pop.quit()


@pytest.fixture
def imap_result(mail_client: AccountClient, dovecot: DovecotServer) -> pb.TestConnectionResponse:
    account = dovecot_account(mail_client, dovecot, pb.PROTOCOL_IMAP, pb.ENCRYPTION_TLS)
    result = mail_client.test_connection(account.id, timeout_seconds=10)
    assert result.success, result.message
    return result


def _folders_by_name(result: pb.TestConnectionResponse) -> dict[str, pb.FolderDetail]:
    return {f.name: f for f in result.folder_details}


@SQLITE_ONLY
def test_imap_reports_every_folder_the_server_lists(
    imap_result: pb.TestConnectionResponse, dovecot: DovecotServer
) -> None:
    real = _real_imap_folders(dovecot)
    assert imap_result.folders == len(imap_result.folder_details) == len(real)
    assert set(_folders_by_name(imap_result)) == {name for _flags, _delim, name in real}


@SQLITE_ONLY
def test_imap_folder_types_are_mapped(imap_result: pb.TestConnectionResponse) -> None:
    types = {name: f.type for name, f in _folders_by_name(imap_result).items()}
    assert types["INBOX"] == pb.FOLDER_TYPE_INBOX
    assert types["Sent"] == pb.FOLDER_TYPE_SENT
    assert types["Drafts"] == pb.FOLDER_TYPE_DRAFTS
    assert types["Trash"] == pb.FOLDER_TYPE_TRASH
    assert types["Junk"] == pb.FOLDER_TYPE_JUNK
    assert types["Archive"] == pb.FOLDER_TYPE_ARCHIVE
    assert types["Projects/2026"] == pb.FOLDER_TYPE_OTHER


@SQLITE_ONLY
def test_imap_nested_folder_shows_its_last_segment(
    imap_result: pb.TestConnectionResponse,
) -> None:
    nested = _folders_by_name(imap_result)["Projects/2026"]
    assert nested.display_name == "2026"
    assert nested.is_selectable


@SQLITE_ONLY
def test_imap_non_ascii_folder_name_is_decoded(imap_result: pb.TestConnectionResponse) -> None:
    names = _folders_by_name(imap_result)
    assert "Café" in names, sorted(names)
    assert names["Café"].display_name == "Café"
    assert not any("&" in name for name in names)  # no modified UTF-7 leaks through


@SQLITE_ONLY
def test_imap_parent_only_folder_is_not_selectable(
    imap_result: pb.TestConnectionResponse,
) -> None:
    folders = _folders_by_name(imap_result)
    assert folders["Projects"].is_selectable is False
    assert folders["Projects"].display_name == "Projects"
    assert folders["INBOX"].is_selectable is True


@SQLITE_ONLY
@pytest.mark.parametrize(
    "encryption",
    [pb.ENCRYPTION_TLS, pb.ENCRYPTION_STARTTLS, pb.ENCRYPTION_NONE],
    ids=["pop3s", "pop3-stls", "pop3-plain"],
)
def test_pop3_reports_mailbox_statistics_and_no_folders(
    mail_client: AccountClient, dovecot: DovecotServer, encryption: int
) -> None:
    account = dovecot_account(mail_client, dovecot, pb.PROTOCOL_POP3, encryption)
    result = mail_client.test_connection(account.id, timeout_seconds=10)
    assert result.success, result.message
    count, size = _real_pop3_stat(dovecot)
    assert result.message_count == count > 0
    assert result.mailbox_size_bytes == size > 0
    assert result.folders == 0
    assert len(result.folder_details) == 0


# -- request password -----------------------------------------------------------------------


@SQLITE_ONLY
def test_request_password_overrides_a_wrong_stored_one(
    mail_client: AccountClient, dovecot: DovecotServer
) -> None:
    account = dovecot_account(mail_client, dovecot, password=WRONG_PASSWORD)
    result = mail_client.test_connection(account.id, password=dovecot.password, timeout_seconds=10)
    assert result.success, result.message


@SQLITE_ONLY
def test_wrong_request_password_is_an_auth_failure_result(
    mail_client: AccountClient, dovecot: DovecotServer
) -> None:
    account = dovecot_account(mail_client, dovecot)
    # A failed login is a successful RPC: no grpc.RpcError is raised.
    result = mail_client.test_connection(account.id, password=WRONG_PASSWORD, timeout_seconds=10)
    assert result.success is False
    assert result.error_code == pb.CONNECTION_ERROR_CODE_AUTH_FAILURE
    assert result.message.startswith("Authentication failed")
    assert WRONG_PASSWORD not in result.message


@SQLITE_ONLY
def test_successful_request_password_is_not_stored(
    mail_client: AccountClient, dovecot: DovecotServer
) -> None:
    account = dovecot_account(mail_client, dovecot, password=WRONG_PASSWORD)
    assert mail_client.test_connection(account.id, password=dovecot.password).success
    stored = mail_client.test_connection(account.id, timeout_seconds=10)
    assert stored.error_code == pb.CONNECTION_ERROR_CODE_AUTH_FAILURE
    assert mail_client.get_account(account.id).credential_id == account.credential_id


@SQLITE_ONLY
def test_failed_request_password_leaves_the_stored_one_working(
    mail_client: AccountClient, dovecot: DovecotServer
) -> None:
    account = dovecot_account(mail_client, dovecot)
    assert not mail_client.test_connection(account.id, password=WRONG_PASSWORD).success
    stored = mail_client.test_connection(account.id, timeout_seconds=10)
    assert stored.success, stored.message
    assert mail_client.get_account(account.id).credential_id == account.credential_id
