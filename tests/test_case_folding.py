"""Addresses that grow when lower-cased: one answer on SQLite and PostgreSQL, never INTERNAL."""

from __future__ import annotations

import grpc
import pytest
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts_client import AccountClient
from sqlalchemy import Engine, text
from support.factories import account_fields, bad_request_fields, expect_error

DOMAIN = "@example.com"
# 'İ' lower-cases to 'i' and a combining dot above: two characters (the only such character).
DOTTED_I = "\u0130"
# 'Ⱥ' and 'Ⱦ' keep their length in characters but grow from 2 to 3 UTF-8 bytes.
A_STROKE, T_STROKE = "\u023a", "\u023e"
LONGEST_LOCAL = 254 - len(DOMAIN)

GROWING = pytest.mark.parametrize(
    "local",
    [
        DOTTED_I * 240,  # the reported input: 252 characters, 492 lower-cased
        DOTTED_I * LONGEST_LOCAL,  # the longest valid address, doubled by lower-casing
        DOTTED_I * 121 + A_STROKE * 121,
        (A_STROKE + T_STROKE) * (LONGEST_LOCAL // 2),
    ],
    ids=["240-dotted-i", "254-dotted-i", "dotted-i-and-a-stroke", "a-and-t-stroke"],
)


def _stored(engine: Engine, account_id: str) -> tuple[str, str]:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT email_address, email_normalized FROM accounts WHERE id = :id"),
            {"id": account_id},
        ).one()
    return row.email_address, row.email_normalized


def _owner_rows(engine: Engine, client: AccountClient) -> tuple[int, int]:
    """The caller's (accounts, credentials) rows, deleted ones included."""
    caller = client.caller
    assert caller is not None
    owner = {"t": caller.tenant_id, "u": caller.user_id}
    where = "WHERE tenant_id = :t AND user_id = :u"
    with engine.connect() as conn:
        accounts = conn.execute(text(f"SELECT COUNT(*) FROM accounts {where}"), owner).scalar()
        secrets = conn.execute(text(f"SELECT COUNT(*) FROM credentials {where}"), owner).scalar()
    return int(accounts or 0), int(secrets or 0)


@GROWING
def test_create_stores_an_address_that_grows_when_lower_cased(
    client: AccountClient, engine: Engine, local: str
) -> None:
    address = local + DOMAIN
    assert len(address) <= 254 and len(address.encode()) < len(address.lower().encode())
    created = client.create_account(**account_fields(email_address=address))
    assert created.email_address == address
    assert client.get_account(created.id).email_address == address
    assert _stored(engine, created.id) == (address, address.lower())


@GROWING
def test_update_stores_an_address_that_grows_when_lower_cased(
    client: AccountClient, engine: Engine, account: pb.Account, local: str
) -> None:
    address = local + DOMAIN
    updated = client.update_account(account.id, email_address=address)
    assert updated.email_address == address
    assert _stored(engine, account.id) == (address, address.lower())


def test_an_address_over_254_characters_is_refused_and_nothing_is_stored(
    client: AccountClient, engine: Engine
) -> None:
    address = DOTTED_I * (LONGEST_LOCAL + 1) + DOMAIN
    err = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.create_account,
        **account_fields(email_address=address),
    )
    assert "emailAddress" in bad_request_fields(err)
    assert _owner_rows(engine, client) == (0, 0)


def test_an_update_over_254_characters_is_refused_and_changes_nothing(
    client: AccountClient, engine: Engine, account: pb.Account
) -> None:
    address = DOTTED_I * (LONGEST_LOCAL + 1) + DOMAIN
    err = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.update_account,
        account.id,
        email_address=address,
    )
    assert "emailAddress" in bad_request_fields(err)
    assert client.get_account(account.id) == account
    assert _stored(engine, account.id) == (account.email_address, account.email_address.lower())


def test_addresses_equal_once_lower_cased_are_one_mailbox(client: AccountClient) -> None:
    first = DOTTED_I * 40 + "STANBUL" + DOMAIN
    client.create_account(**account_fields(email_address=first))
    expect_error(
        grpc.StatusCode.ALREADY_EXISTS,
        client.create_account,
        **account_fields(email_address=first.lower()),
    )
