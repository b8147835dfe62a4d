"""Mutual TLS: the caller's identity is its client certificate, checked against the policy."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from mailaccounts_client import Credentials
from support.auth import status_of, tls_client, tls_settings, write_policy
from support.factories import account_fields
from support.grpc_server import ServerThread
from support.pki import BILLING_ID, DNS_CLIENT_NAME, OTHER_ID, Pki


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    # Authentication happens before any storage work; the storage paths are covered on both
    # databases by the other suites (and the audit actor test below runs on both).
    return f"sqlite:///{tmp_path / 'accounts.db'}"


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    return write_policy(
        tmp_path / "policy.toml",
        {
            BILLING_ID: {"tenants": ["t1", "t2"], "roles": ["accounts"]},
            OTHER_ID: {"tenants": ["*"], "roles": ["sync_worker"]},
            DNS_CLIENT_NAME: {"tenants": ["t3"], "roles": ["accounts"]},
        },
    )


@pytest.fixture
def mtls_server(make_server: Callable[..., ServerThread], pki: Pki, policy: Path) -> ServerThread:
    return make_server(auth="mtls", policy_file=str(policy), **tls_settings(pki))


def test_known_identity_acts_for_an_allowed_tenant(mtls_server: ServerThread, pki: Pki) -> None:
    with tls_client(mtls_server.target, pki, pki.billing, Credentials("t1", "alice")) as c:
        created = c.create_account(**account_fields())
        assert created.tenant_id == "t1" and created.user_id == "alice"
        assert c.get_account(created.id).id == created.id


def test_dns_san_identity_is_used_when_there_is_no_uri(mtls_server: ServerThread, pki: Pki) -> None:
    with tls_client(mtls_server.target, pki, pki.dns_client, Credentials("t3", "u")) as c:
        assert c.list_accounts().count == 0


def test_tenant_outside_the_identity_list_is_denied_and_nothing_changes(
    mtls_server: ServerThread, pki: Pki
) -> None:
    with tls_client(mtls_server.target, pki, pki.billing, Credentials("t9", "alice")) as c:
        code, details = status_of(lambda: c.create_account(**account_fields()))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert "t9" in details
    # t9 is reachable through an identity allowed for it: nothing was created there.
    with tls_client(mtls_server.target, pki, pki.dns_client, Credentials("t3", "x")) as c:
        assert c.list_accounts().count == 0


def test_identity_allowed_for_tenant_a_cannot_read_tenant_b(
    mtls_server: ServerThread, pki: Pki
) -> None:
    with tls_client(mtls_server.target, pki, pki.dns_client, Credentials("t3", "bob")) as c:
        theirs = c.create_account(**account_fields())
    with tls_client(mtls_server.target, pki, pki.billing, Credentials("t3", "bob")) as c:
        code, _ = status_of(lambda: c.get_account(theirs.id))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        code, _ = status_of(lambda: c.list_accounts())
        assert code == grpc.StatusCode.PERMISSION_DENIED


def test_unknown_identity_is_denied(mtls_server: ServerThread, pki: Pki) -> None:
    with tls_client(mtls_server.target, pki, pki.unknown, Credentials("t1", "u")) as c:
        code, details = status_of(lambda: c.list_accounts())
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "not allowed by the policy" in details


def test_identity_without_an_accounts_role_is_denied(mtls_server: ServerThread, pki: Pki) -> None:
    with tls_client(mtls_server.target, pki, pki.other, Credentials("t1", "u")) as c:
        code, details = status_of(lambda: c.list_accounts())
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "role" in details


@pytest.mark.parametrize("which", ["none", "foreign", "expired"])
def test_handshake_refuses_missing_foreign_or_expired_certificates(
    mtls_server: ServerThread, pki: Pki, which: str
) -> None:
    cert = {"none": None, "foreign": pki.foreign, "expired": pki.expired}[which]
    with tls_client(mtls_server.target, pki, cert, Credentials("t1", "u")) as c:
        code, _ = status_of(lambda: c.list_accounts(timeout=5))
    # TLS refuses the connection before any RPC: the client sees the handshake failure.
    assert code == grpc.StatusCode.UNAVAILABLE


def test_plaintext_client_cannot_reach_a_tls_server(mtls_server: ServerThread) -> None:
    from mailaccounts_client import AccountClient

    with AccountClient(mtls_server.target, Credentials("t1", "u")) as c:
        code, _ = status_of(lambda: c.list_accounts(timeout=5))
    assert code == grpc.StatusCode.UNAVAILABLE


def test_metadata_still_required_in_mtls_mode(mtls_server: ServerThread, pki: Pki) -> None:
    with tls_client(mtls_server.target, pki, pki.billing, Credentials("t1", "")) as c:
        code, details = status_of(lambda: c.list_accounts())
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "x-user-id" in details


def test_policy_reload_while_calls_run(mtls_server: ServerThread, pki: Pki, policy: Path) -> None:
    """Calls keep succeeding while the policy is replaced; the new grant applies after."""
    errors: list[BaseException] = []
    done = threading.Event()

    def hammer() -> None:
        with tls_client(mtls_server.target, pki, pki.billing, Credentials("t1", "a")) as c:
            while not done.is_set():
                try:
                    c.list_accounts()
                except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                    errors.append(exc)
                    return

    workers = [threading.Thread(target=hammer) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        with tls_client(mtls_server.target, pki, pki.billing, Credentials("t5", "a")) as c:
            code, _ = status_of(lambda: c.list_accounts())
            assert code == grpc.StatusCode.PERMISSION_DENIED
            for _ in range(5):  # rewrite it several times under load
                write_policy(
                    policy,
                    {BILLING_ID: {"tenants": ["t1", "t5"], "roles": ["accounts"]}},
                )
                time.sleep(0.3)
            deadline = time.monotonic() + 10
            while True:
                try:
                    c.list_accounts()
                    break
                except grpc.RpcError:
                    assert time.monotonic() < deadline, "policy change not picked up in 10 s"
                    time.sleep(0.2)
    finally:
        done.set()
        for w in workers:
            w.join()
    assert not errors


def test_broken_policy_file_keeps_the_old_policy(
    mtls_server: ServerThread, pki: Pki, policy: Path
) -> None:
    policy.write_text("[identities.\n this is not toml")
    assert mtls_server.running.policy is not None
    assert mtls_server.running.policy.reload() is False
    with tls_client(mtls_server.target, pki, pki.billing, Credentials("t1", "a")) as c:
        assert c.list_accounts().count == 0


def test_server_certificate_rotation_without_restart(
    make_server: Callable[..., ServerThread], pki: Pki, policy: Path, tmp_path: Path
) -> None:
    """New certificate files are served to new connections; the old CA no longer verifies."""
    from mailaccounts_server.devcerts import issue, new_ca

    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    cert.write_bytes(pki.server.cert_pem())
    key.write_bytes(pki.server.key_pem())
    server = make_server(
        auth="mtls", policy_file=str(policy), tls_cert=str(cert), tls_key=str(key),
        client_ca=str(pki.ca),
    )  # fmt: skip
    with tls_client(server.target, pki, pki.billing, Credentials("t1", "a")) as c:
        assert c.list_accounts().count == 0
    new_authority = new_ca("rotated CA")
    rotated = issue(new_authority, "localhost", dns=["localhost"], ips=["127.0.0.1"], server=True)
    staged_key, staged_cert = tmp_path / "k.tmp", tmp_path / "c.tmp"
    staged_key.write_bytes(rotated.key_pem)
    staged_cert.write_bytes(rotated.cert_pem)
    staged_key.replace(key)  # key first, as a rotation tool would
    staged_cert.replace(cert)
    creds = grpc.ssl_channel_credentials(
        root_certificates=new_authority.cert_pem,
        private_key=pki.billing.key_pem(),
        certificate_chain=pki.billing.cert_pem(),
    )
    from mailaccounts_client import AccountClient

    with AccountClient(server.target, Credentials("t1", "a"), channel_credentials=creds) as c:
        assert c.list_accounts().count == 0
    with tls_client(server.target, pki, pki.billing, Credentials("t1", "a")) as c:
        code, _ = status_of(lambda: c.list_accounts(timeout=5))
        assert code == grpc.StatusCode.UNAVAILABLE
