"""The tenant_admin role: reads every user's accounts and audit events within its tenants,
and nothing more; every audit event records the authenticated actor. Both databases."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from mailaccounts_client import AccountClient, Credentials
from support.auth import status_of, tls_client, tls_settings, write_policy
from support.factories import account_fields
from support.grpc_server import ServerThread
from support.pki import BILLING_ID, OTHER_ID, Pki


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def admin_server(
    make_server: Callable[..., ServerThread], pki: Pki, tmp_path: Path, tenant: str
) -> ServerThread:
    policy = write_policy(
        tmp_path / "policy.toml",
        {
            BILLING_ID: {"tenants": [tenant], "roles": ["accounts"]},
            OTHER_ID: {"tenants": [tenant], "roles": ["tenant_admin"]},
        },
    )
    return make_server(auth="mtls", policy_file=str(policy), **tls_settings(pki))


def _user(server: ServerThread, pki: Pki, tenant: str, user: str) -> AccountClient:
    return tls_client(server.target, pki, pki.billing, Credentials(tenant, user))


def _admin(server: ServerThread, pki: Pki, tenant: str) -> AccountClient:
    return tls_client(server.target, pki, pki.other, Credentials(tenant, "the-admin"))


def test_admin_lists_and_reads_every_users_accounts(
    admin_server: ServerThread, pki: Pki, tenant: str
) -> None:
    ids = set()
    for user in ("u1", "u2", "u3"):
        with _user(admin_server, pki, tenant, user) as c:
            ids.add(c.create_account(**account_fields()).id)
    with _admin(admin_server, pki, tenant) as admin:
        assert {a.id for a in admin.iter_accounts(page_size=2, all_users=True)} == ids
        assert admin.list_accounts(all_users=True).total_size == 3
        assert admin.list_accounts(all_users=True, query="company").total_size == 3
        assert admin.list_accounts().total_size == 0  # its own user has none
        for account_id in ids:
            assert admin.get_account(account_id).id == account_id
        events = admin.list_audit_events(all_users=True).events
        assert {e.account_id for e in events} == ids
        assert {e.user_id for e in events} == {"u1", "u2", "u3"}


def test_admin_cannot_change_another_users_account(
    admin_server: ServerThread, pki: Pki, tenant: str
) -> None:
    with _user(admin_server, pki, tenant, "u1") as c:
        account = c.create_account(**account_fields())
    with _admin(admin_server, pki, tenant) as admin:
        for call in (
            lambda: admin.update_account(account.id, account_name="hijacked"),
            lambda: admin.delete_account(account.id),
            lambda: admin.test_connection(account.id, password="x"),
        ):
            code, _ = status_of(call)
            assert code == grpc.StatusCode.PERMISSION_DENIED
    with _user(admin_server, pki, tenant, "u1") as c:
        assert c.get_account(account.id).account_name == account.account_name


def test_plain_accounts_role_cannot_list_all_users(
    admin_server: ServerThread, pki: Pki, tenant: str
) -> None:
    with _user(admin_server, pki, tenant, "u1") as c:
        for call in (
            lambda: c.list_accounts(all_users=True),
            lambda: c.list_audit_events(all_users=True),
        ):
            code, details = status_of(call)
            assert code == grpc.StatusCode.PERMISSION_DENIED
            assert "tenant_admin" in details


def test_admin_sees_nothing_of_another_tenant(
    admin_server: ServerThread, pki: Pki, tenant: str
) -> None:
    with _admin(admin_server, pki, "elsewhere") as admin:
        code, _ = status_of(lambda: admin.list_accounts(all_users=True))
    assert code == grpc.StatusCode.PERMISSION_DENIED


def test_audit_events_record_the_certificate_identity(
    admin_server: ServerThread, pki: Pki, tenant: str
) -> None:
    with _user(admin_server, pki, tenant, "u1") as c:
        account = c.create_account(**account_fields())
        c.update_account(account.id, account_name="renamed")
        events = c.list_audit_events(account_id=account.id).events
    assert [e.actor.identity for e in events] == [BILLING_ID, BILLING_ID]
    assert all(e.actor.subject == "" for e in events)


def test_unauthenticated_mode_records_an_anonymous_actor(client: AccountClient) -> None:
    account = client.create_account(**account_fields())
    [event] = client.list_audit_events(account_id=account.id).events
    assert event.actor.identity == "anonymous"


def test_admin_page_tokens_do_not_work_for_own_lists(
    admin_server: ServerThread, pki: Pki, tenant: str
) -> None:
    with _user(admin_server, pki, tenant, "u1") as c:
        for _ in range(3):
            c.create_account(**account_fields())
    with _admin(admin_server, pki, tenant) as admin:
        token = admin.list_accounts(all_users=True, page_size=1).next_page_token
        assert token
        code, _ = status_of(lambda: admin.list_accounts(page_size=1, page_token=token))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
