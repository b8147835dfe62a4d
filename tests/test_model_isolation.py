"""A model-based state machine over 3 tenants x 2 users: no call reads, changes or lists another
owner's data, and the server agrees with the model after every step."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts_client import AccountClient, Credentials
from support.grpc_server import ServerThread
from support.soak import budget, property_settings, without_rate_limits

OK = grpc.StatusCode.OK
# Another owner's account: refused either way, never shown.
FOREIGN = {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND}
TIMEOUT = 30.0

# Users named so that tenant and user joined with "-" collide across tenants
# ("acme-X" + "a-bob" and "acme-X-a" + "bob"): the owner key must keep them apart.
USERS = ("a-bob", "bob")
# Addresses that collide case-insensitively within an owner, and are free in every other one.
EMAILS = (
    "ann@example.com",
    "Ann@EXAMPLE.com",
    "ann@example.COM",
    "bob@example.com",
    "ann@mail.test",
    "BOB@mail.test",
)
# Case and a trailing dot do not make another host for a stored password.
HOSTS = ("imap.example.com", "IMAP.Example.com.", "mail.test", "192.0.2.7")
# Printable text (no C0 or C1 controls, which the server refuses), Latin and beyond ASCII.
_TEXT = st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_categories=["Cc"])
NAMES = st.text(_TEXT, min_size=1, max_size=20).filter(lambda s: bool(s.strip()))
PASSWORDS = st.text(_TEXT, min_size=1, max_size=20)
PAGE_SIZES = st.integers(1, 5)
PROTOCOL_DEFAULT, ENCRYPTION_DEFAULT, SYNC_INTERVAL_DEFAULT = 1, 1, 300
JSON_NAMES = {
    "account_name": "accountName",
    "email_address": "emailAddress",
    "hostname": "hostname",
    "port": "port",
    "encryption": "encryption",
    "username": "username",
    "is_sync_enabled": "isSyncEnabled",
    "sync_interval": "syncInterval",
    "is_enabled": "isEnabled",
}
CREATE_SETTINGS = st.fixed_dictionaries(
    {
        "account_name": NAMES,
        "email_address": st.sampled_from(EMAILS),
        "protocol": st.sampled_from([0, 1, 2]),
        "hostname": st.sampled_from(HOSTS),
        "port": st.integers(1, 65535),
        "encryption": st.sampled_from([0, 1, 2, 3]),
        "username": NAMES,
    },
    optional={
        "is_sync_enabled": st.booleans(),
        "sync_interval": st.integers(60, 3600),
    },
)
UPDATE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "account_name": NAMES,
    "email_address": st.sampled_from(EMAILS),
    "hostname": st.sampled_from(HOSTS),
    "port": st.integers(1, 65535),
    "encryption": st.sampled_from([1, 2, 3]),
    "username": NAMES,
    "is_sync_enabled": st.booleans(),
    "sync_interval": st.integers(60, 3600),
    "is_enabled": st.booleans(),
}
UPDATES = st.fixed_dictionaries({}, optional=UPDATE_VALUES)
ETAG_MODES = st.sampled_from(["none", "none", "current", "current", "stale", "bogus"])


def normalize_host(hostname: str) -> str:
    return hostname.strip().rstrip(".").lower()


def status(fn: Any, *args: Any, **kwargs: Any) -> tuple[grpc.StatusCode, Any]:
    """(OK, reply) or (the error's code, its details)."""
    try:
        return OK, fn(*args, **kwargs)
    except grpc.RpcError as err:
        return err.code(), err.details()


@dataclass
class ModelAccount:
    """What the server should hold for one account."""

    id: str
    owner: int
    settings: dict[str, Any]
    credential_id: str
    credential_host: str
    etag: str | None  # None after a delete, until a listing shows it
    deleted: bool = False
    old_etags: list[str] = field(default_factory=list)

    @property
    def email_key(self) -> str:
        return str(self.settings["email_address"]).lower()


@dataclass(frozen=True)
class CreateRequest:
    """A CreateAccount request sent with a requestId, and what it created."""

    owner: int
    fields: dict[str, Any]
    account_id: str


def create_settings(raw: dict[str, Any]) -> dict[str, Any]:
    """The stored settings of a create request: defaults applied, display name trimmed."""
    return {
        "account_name": raw["account_name"].strip(),
        "email_address": raw["email_address"],
        "protocol": raw["protocol"] or PROTOCOL_DEFAULT,
        "hostname": raw["hostname"],
        "port": raw["port"],
        "encryption": raw["encryption"] or ENCRYPTION_DEFAULT,
        "username": raw["username"],
        "is_sync_enabled": raw.get("is_sync_enabled", True),
        "sync_interval": raw.get("sync_interval", SYNC_INTERVAL_DEFAULT),
        "is_enabled": True,
    }


def make_machine(target: str) -> type[RuleBasedStateMachine]:
    """The state machine class, bound to the server at `target`."""

    class IsolationMachine(RuleBasedStateMachine):
        """Model: each owner's accounts, credentials, request ids and audit trail."""

        def __init__(self) -> None:
            super().__init__()
            suffix = uuid.uuid4().hex[:10]
            tenants = (f"acme-{suffix}", f"acme-{suffix}-a", f"zeta-{suffix}")
            self.callers = [Credentials(t, u) for t in tenants for u in USERS]
            self.channel = grpc.insecure_channel(target)
            self.clients = [AccountClient(self.channel, c, timeout=TIMEOUT) for c in self.callers]
            # In creation order: draws pick by position, never in the order of the server's
            # random ids, so that a replayed example picks the same accounts.
            self.accounts: dict[str, ModelAccount] = {}
            self.credentials: dict[str, tuple[int, str]] = {}  # id -> (owner, bound host)
            self.requests: list[CreateRequest] = []
            # (account id, action, changed fields) per owner; fields only compared for updates.
            self.audit: list[list[tuple[str, int, tuple[str, ...]]]] = [[] for _ in self.callers]

        # -- model queries -------------------------------------------------------------------

        def owned(self, owner: int, *, deleted: bool | None = None) -> list[ModelAccount]:
            return [
                a
                for a in self.accounts.values()
                if a.owner == owner and (deleted is None or a.deleted == deleted)
            ]

        def address_taken(self, owner: int, email: str, besides: str = "") -> bool:
            return any(
                a.email_key == email.lower() and a.id != besides
                for a in self.owned(owner, deleted=False)
            )

        def who(self, owner: int) -> str:
            c = self.callers[owner]
            return f"{c.tenant_id}/{c.user_id}"

        def check_account(self, reply: pb.Account, model: ModelAccount) -> None:
            """The server's account equals the model's, field by field."""
            caller = self.callers[model.owner]
            assert reply.id == model.id
            assert (reply.tenant_id, reply.user_id) == (caller.tenant_id, caller.user_id), (
                f"account {model.id} of {self.who(model.owner)} shows owner "
                f"{reply.tenant_id}/{reply.user_id}"
            )
            got = {name: getattr(reply, name) for name in model.settings}
            assert got == model.settings, f"account {model.id}: {got} != model {model.settings}"
            assert reply.credential_id == model.credential_id
            expected_required = model.credential_host != normalize_host(model.settings["hostname"])
            assert reply.password_required == expected_required
            assert reply.HasField("delete_time") == model.deleted
            if model.etag is None:
                assert reply.etag not in model.old_etags, "a write left the etag unchanged"
                model.etag = reply.etag
            else:
                assert reply.etag == model.etag

        def check_untouched(self, account_id: str) -> None:
            """After another caller's refused call: the owner still reads the model's account."""
            model = self.accounts.get(account_id)
            if model is None or model.deleted:
                return
            code, reply = status(self.clients[model.owner].get_account, account_id)
            assert code == OK, f"owner's GetAccount of {account_id}: {code} {reply}"
            self.check_account(reply, model)

        def pick_account(self, data: st.DataObject, owner: int | None = None) -> str:
            """Mostly one of `owner`'s accounts, else another owner's or one that never existed
            (any existing account when `owner` is None)."""
            own = [a.id for a in self.accounts.values() if a.owner == owner]
            others = [a.id for a in self.accounts.values() if a.owner != owner]
            kinds = ["own"] * 3 * bool(own) + ["foreign"] * bool(others)
            kinds += ["ghost"] if owner is not None or not kinds else []
            kind = data.draw(st.sampled_from(kinds), label="target")
            if kind == "ghost":
                return str(data.draw(st.uuids(), label="unknown id"))
            return data.draw(st.sampled_from(own if kind == "own" else others), label=kind)

        def pick_call(self, data: st.DataObject) -> tuple[int, str]:
            """(caller, account id): mostly the owner on its own account, else a caller on
            another owner's account, or on an id that never existed."""
            kinds = ["own"] * 6 + ["foreign"] * 2 if self.accounts else []
            kind = data.draw(st.sampled_from([*kinds, "ghost"]), label="call")
            if kind == "ghost":
                owner = data.draw(st.integers(0, len(self.callers) - 1), label="caller")
                return owner, str(data.draw(st.uuids(), label="unknown id"))
            account_id = data.draw(st.sampled_from(list(self.accounts)), label="account id")
            model = self.accounts[account_id]
            if kind == "own":
                return model.owner, account_id
            others = [o for o in range(len(self.callers)) if o != model.owner]
            return data.draw(st.sampled_from(others), label="foreign caller"), account_id

        def new_etag(self, model: ModelAccount, etag: str) -> None:
            assert etag not in model.old_etags and etag != model.etag, "a write kept the etag"
            if model.etag is not None:
                model.old_etags.append(model.etag)
            model.etag = etag

        def etag_for(self, data: st.DataObject, model: ModelAccount | None, mode: str) -> str:
            if mode == "current" and model is not None and model.etag is not None:
                return model.etag
            if mode == "stale" and model is not None and model.old_etags:
                return data.draw(st.sampled_from(model.old_etags), label="stale etag")
            if mode in ("stale", "bogus"):
                return f'W/"{data.draw(st.integers(10_000, 99_999), label="bogus version")}"'
            return ""

        def etag_conflicts(self, model: ModelAccount, etag: str) -> bool:
            return bool(etag) and etag != model.etag

        # -- create ----------------------------------------------------------------------------

        def expect_create(
            self, owner: int, raw: dict[str, Any]
        ) -> tuple[grpc.StatusCode, CreateRequest | None]:
            """What CreateAccount with `raw` should answer: a replay names the earlier request."""
            rid = raw.get("request_id", "")
            if rid:
                for request in self.requests:
                    if request.owner == owner and request.fields["request_id"] == rid:
                        same = request.fields == raw
                        return (OK, request) if same else (grpc.StatusCode.INVALID_ARGUMENT, None)
            cred = raw.get("credential_id")
            if cred is not None and self.credentials.get(cred, (-1, ""))[0] != owner:
                return grpc.StatusCode.INVALID_ARGUMENT, None
            if self.address_taken(owner, raw["email_address"]):
                return grpc.StatusCode.ALREADY_EXISTS, None
            return OK, None

        def send_create(self, owner: int, raw: dict[str, Any]) -> pb.Account | None:
            expected, replayed = self.expect_create(owner, raw)
            code, reply = status(self.clients[owner].create_account, **raw)
            assert code == expected, (
                f"CreateAccount by {self.who(owner)}: {code} {reply}, model expects {expected}"
            )
            if code != OK:
                return None
            if replayed is not None:
                self.check_account(reply, self.accounts[replayed.account_id])
                return reply  # type: ignore[no-any-return]
            settings = create_settings(raw)
            if "credential_id" in raw:
                assert reply.credential_id == raw["credential_id"]
                host = self.credentials[raw["credential_id"]][1]
            else:
                assert reply.credential_id and reply.credential_id not in self.credentials
                host = normalize_host(raw["hostname"])
                self.credentials[reply.credential_id] = (owner, host)
            assert reply.id not in self.accounts
            model = ModelAccount(reply.id, owner, settings, reply.credential_id, host, reply.etag)
            self.accounts[reply.id] = model
            self.check_account(reply, model)
            self.audit[owner].append((reply.id, pb.AUDIT_ACTION_CREATE, ()))
            if raw.get("request_id"):
                self.requests.append(CreateRequest(owner, dict(raw), reply.id))
            return reply  # type: ignore[no-any-return]

        @initialize(first=st.lists(st.tuples(CREATE_SETTINGS, PASSWORDS), min_size=6, max_size=6))
        def one_account_each(self, first: list[tuple[dict[str, Any], str]]) -> None:
            """Every owner starts with an account, so most calls meet existing data."""
            for owner, (settings, password) in enumerate(first):
                self.send_create(owner, {**settings, "password": password})

        @rule(
            owner=st.integers(0, 5),
            settings=CREATE_SETTINGS,
            password=PASSWORDS,
            use_credential=st.booleans(),
            request=st.sampled_from(["none", "new", "retried"]),
            data=st.data(),
        )
        def create(
            self,
            owner: int,
            settings: dict[str, Any],
            password: str,
            use_credential: bool,
            request: str,
            data: st.DataObject,
        ) -> None:
            raw = dict(settings)
            own_credentials = [c for c, (o, _) in self.credentials.items() if o == owner]
            if use_credential and own_credentials:
                raw["credential_id"] = data.draw(st.sampled_from(own_credentials), label="cred")
            else:
                raw["password"] = password
            if request != "none":
                raw["request_id"] = str(uuid.uuid4())
            first = self.send_create(owner, raw)
            if request == "retried":
                again = self.send_create(owner, raw)
                assert again == first, "a retried requestId answered differently"

        @precondition(lambda self: bool(self.requests))
        @rule(data=st.data(), owner=st.integers(0, 5), change=st.booleans())
        def reuse_request_id(self, data: st.DataObject, owner: int, change: bool) -> None:
            """The same requestId again, by its owner (a replay, or INVALID_ARGUMENT with other
            content) or by another caller (a request of its own, with its own outcome)."""
            request = data.draw(st.sampled_from(self.requests), label="earlier request")
            raw = dict(request.fields)
            cred = raw.get("credential_id")
            if cred is not None and cred not in self.credentials:
                return  # its credential was replaced and dropped since: out of this model
            if change:
                raw["port"] = raw["port"] % 65535 + 1
            self.send_create(owner, raw)

        @rule(owner=st.integers(0, 5), settings=CREATE_SETTINGS, data=st.data())
        def create_with_foreign_credential(
            self, owner: int, settings: dict[str, Any], data: st.DataObject
        ) -> None:
            """Another owner's (or an unknown) credential id is INVALID_ARGUMENT."""
            foreign = [c for c, (o, _) in self.credentials.items() if o != owner]
            choices = st.uuids().map(str)
            if foreign:
                choices = st.sampled_from(foreign) | choices
            raw = {**settings, "credential_id": data.draw(choices, label="foreign credential")}
            self.send_create(owner, raw)

        # -- update, delete, undelete ------------------------------------------------------------

        def expect_write(
            self, owner: int, model: ModelAccount | None, etag: str
        ) -> set[grpc.StatusCode] | None:
            """The refusal an update or delete must get, or None when it should succeed."""
            if model is None:
                return {grpc.StatusCode.NOT_FOUND}
            if model.owner != owner:
                return FOREIGN
            if model.deleted:
                return {grpc.StatusCode.NOT_FOUND}
            if self.etag_conflicts(model, etag):
                return {grpc.StatusCode.ABORTED}
            return None

        @precondition(lambda self: bool(self.accounts))
        @rule(
            changes=UPDATES,
            password=st.none() | PASSWORDS,
            etag_mode=ETAG_MODES,
            data=st.data(),
        )
        def update(
            self,
            changes: dict[str, Any],
            password: str | None,
            etag_mode: str,
            data: st.DataObject,
        ) -> None:
            owner, account_id = self.pick_call(data)
            model = self.accounts.get(account_id)
            etag = self.etag_for(data, model, etag_mode)
            refused = self.expect_write(owner, model, etag)
            if refused is None and model is not None and "email_address" in changes:
                if self.address_taken(owner, changes["email_address"], besides=account_id):
                    refused = {grpc.StatusCode.ALREADY_EXISTS}
            kwargs = dict(changes)
            if password is not None:
                kwargs["password"] = password
            code, reply = status(
                self.clients[owner].update_account, account_id, etag=etag, **kwargs
            )
            if refused is not None:
                assert code in refused, f"UpdateAccount by {self.who(owner)}: {code} {reply}"
                self.check_untouched(account_id)
                return
            assert code == OK, f"UpdateAccount by {self.who(owner)}: {code} {reply}"
            assert model is not None
            model.settings.update(changes)
            if "account_name" in changes:
                model.settings["account_name"] = changes["account_name"].strip()
            self.new_etag(model, reply.etag)
            if password is not None:
                old = model.credential_id
                assert reply.credential_id not in (old, *self.credentials)
                model.credential_id = reply.credential_id
                model.credential_host = normalize_host(model.settings["hostname"])
                self.credentials[reply.credential_id] = (owner, model.credential_host)
                if not any(a.credential_id == old for a in self.accounts.values()):
                    del self.credentials[old]  # no live or restorable account uses it
            self.check_account(reply, model)
            names = sorted(JSON_NAMES[name] for name in changes)
            names += ["password"] if password is not None else []
            self.audit[owner].append((account_id, pb.AUDIT_ACTION_UPDATE, tuple(names)))

        @precondition(lambda self: bool(self.accounts))
        @rule(etag_mode=ETAG_MODES, data=st.data())
        def delete(self, etag_mode: str, data: st.DataObject) -> None:
            owner, account_id = self.pick_call(data)
            model = self.accounts.get(account_id)
            etag = self.etag_for(data, model, etag_mode)
            refused = self.expect_write(owner, model, etag)
            code, reply = status(self.clients[owner].delete_account, account_id, etag=etag)
            if refused is not None:
                assert code in refused, f"DeleteAccount by {self.who(owner)}: {code} {reply}"
                self.check_untouched(account_id)
                return
            assert code == OK, f"DeleteAccount by {self.who(owner)}: {code} {reply}"
            assert model is not None
            assert reply.id == account_id
            assert reply.expire_time.ToNanoseconds() > reply.delete_time.ToNanoseconds() > 0
            model.deleted = True
            if model.etag is not None:
                model.old_etags.append(model.etag)
            model.etag = None
            self.audit[owner].append((account_id, pb.AUDIT_ACTION_DELETE, ()))

        @precondition(lambda self: bool(self.accounts))
        @rule(data=st.data())
        def undelete(self, data: st.DataObject) -> None:
            owner, account_id = self.pick_call(data)
            model = self.accounts.get(account_id)
            refused: set[grpc.StatusCode] | None = None
            if model is None:
                refused = {grpc.StatusCode.NOT_FOUND}
            elif model.owner != owner:
                refused = FOREIGN
            elif not model.deleted:
                refused = {grpc.StatusCode.FAILED_PRECONDITION}
            elif self.address_taken(owner, model.settings["email_address"]):
                refused = {grpc.StatusCode.ALREADY_EXISTS}
            code, reply = status(self.clients[owner].undelete_account, account_id)
            if refused is not None:
                assert code in refused, f"UndeleteAccount by {self.who(owner)}: {code} {reply}"
                self.check_untouched(account_id)
                return
            assert code == OK, f"UndeleteAccount by {self.who(owner)}: {code} {reply}"
            assert model is not None
            model.deleted = False
            if model.etag is not None:  # learnt from a listing while deleted
                model.old_etags.append(model.etag)
            model.etag = None
            self.check_account(reply, model)  # learns the new etag, checks it is new
            self.audit[owner].append((account_id, pb.AUDIT_ACTION_UNDELETE, ()))

        # -- reads -----------------------------------------------------------------------------

        @precondition(lambda self: bool(self.accounts))
        @rule(data=st.data())
        def get(self, data: st.DataObject) -> None:
            owner, account_id = self.pick_call(data)
            model = self.accounts.get(account_id)
            code, reply = status(self.clients[owner].get_account, account_id)
            if model is not None and model.owner == owner and not model.deleted:
                assert code == OK, f"GetAccount of own {account_id}: {code} {reply}"
                self.check_account(reply, model)
            elif model is not None and model.owner != owner:
                assert code in FOREIGN, (
                    f"GetAccount by {self.who(owner)} of {self.who(model.owner)}'s account: "
                    f"{code} {reply}"
                )
            else:
                assert code == grpc.StatusCode.NOT_FOUND, f"GetAccount: {code} {reply}"

        @precondition(lambda self: bool(self.accounts))
        @rule(data=st.data())
        def test_connection_of_foreign_account(self, data: st.DataObject) -> None:
            """Refused before any mail server is contacted (own accounts are never probed)."""
            account_id = self.pick_account(data)
            model = self.accounts[account_id]
            others = [o for o in range(len(self.callers)) if o != model.owner]
            owner = data.draw(st.sampled_from(others), label="caller")
            code, reply = status(self.clients[owner].test_connection, account_id, timeout=TIMEOUT)
            # The per-tenant rate limit of connection tests may come first: no data either way.
            allowed = FOREIGN | {grpc.StatusCode.RESOURCE_EXHAUSTED}
            assert code in allowed, f"TestConnection of a foreign account: {code} {reply}"
            self.check_untouched(account_id)

        def list_all(
            self, owner: int, page_size: int, **filters: Any
        ) -> tuple[list[pb.Account], int]:
            """Every page, following next_page_token; (accounts, total_size of page one)."""
            seen: list[pb.Account] = []
            token, total, pages = "", -1, 0
            while True:
                code, page = status(
                    self.clients[owner].list_accounts,
                    page_size=page_size,
                    page_token=token,
                    **filters,
                )
                assert code == OK, f"ListAccounts page {pages} of {self.who(owner)}: {page}"
                assert page.count == len(page.accounts) <= page_size
                total = page.total_size if total < 0 else total
                seen.extend(page.accounts)
                token, pages = page.next_page_token, pages + 1
                assert pages <= len(self.accounts) + 1, "page tokens do not end"
                if not token:
                    return seen, total

        def check_listing(self, owner: int, page_size: int, **filters: Any) -> None:
            accounts, total = self.list_all(owner, page_size, **filters)
            ids = [a.id for a in accounts]
            assert len(ids) == len(set(ids)), f"an account on two pages: {ids}"
            show_deleted = filters.get("show_deleted", False)
            protocol = filters.get("protocol", 0)
            expected = {
                a.id: a
                for a in self.owned(owner)
                if (show_deleted or not a.deleted)
                and (not protocol or a.settings["protocol"] == protocol)
            }
            strangers = [
                f"{a.id} of {self.who(self.accounts[a.id].owner)}"
                for a in accounts
                if a.id in self.accounts and self.accounts[a.id].owner != owner
            ]
            assert not strangers, f"{self.who(owner)} lists other owners' accounts: {strangers}"
            assert set(ids) == set(expected), (
                f"ListAccounts of {self.who(owner)} {filters}: "
                f"missing {set(expected) - set(ids)}, unexpected {set(ids) - set(expected)}"
            )
            assert total == len(expected)
            for reply in accounts:
                self.check_account(reply, expected[reply.id])
            order = [(a.created_at.ToNanoseconds(), a.id) for a in accounts]
            assert order == sorted(order, reverse=True), "not newest first"

        @rule(
            owner=st.integers(0, 5),
            page_size=PAGE_SIZES,
            show_deleted=st.booleans(),
            protocol=st.sampled_from([0, 0, 1, 2]),
        )
        def list_accounts(
            self, owner: int, page_size: int, show_deleted: bool, protocol: int
        ) -> None:
            self.check_listing(owner, page_size, show_deleted=show_deleted, protocol=protocol)

        def audit_all(self, owner: int, page_size: int, account_id: str) -> list[pb.AuditEvent]:
            events: list[pb.AuditEvent] = []
            token, pages = "", 0
            while True:
                code, page = status(
                    self.clients[owner].list_audit_events,
                    page_size=page_size,
                    page_token=token,
                    account_id=account_id,
                )
                assert code == OK, f"ListAuditEvents page {pages} of {self.who(owner)}: {page}"
                assert len(page.events) <= page_size
                events.extend(page.events)
                token, pages = page.next_page_token, pages + 1
                assert pages <= len(self.audit[owner]) + 1, "audit page tokens do not end"
                if not token:
                    return events

        def check_audit(self, owner: int, page_size: int, account_id: str = "") -> None:
            caller = self.callers[owner]
            events = self.audit_all(owner, page_size, account_id)
            foreign = [
                (e.tenant_id, e.user_id, e.account_id)
                for e in events
                if (e.tenant_id, e.user_id) != (caller.tenant_id, caller.user_id)
                or (e.account_id in self.accounts and self.accounts[e.account_id].owner != owner)
            ]
            assert not foreign, f"{self.who(owner)} sees other owners' audit events: {foreign}"
            got: Counter[tuple[str, int, tuple[str, ...]]] = Counter(
                (
                    e.account_id,
                    int(e.action),
                    tuple(e.changed_fields) if e.action == pb.AUDIT_ACTION_UPDATE else (),
                )
                for e in events
            )
            want = Counter(e for e in self.audit[owner] if not account_id or e[0] == account_id)
            assert got == want, (
                f"audit of {self.who(owner)}: missing {want - got}, unexpected {got - want}"
            )
            assert all(e.outcome == pb.AUDIT_OUTCOME_SUCCESS for e in events)
            times = [e.time.ToNanoseconds() for e in events]
            assert times == sorted(times, reverse=True), "audit events not newest first"
            assert len({e.id for e in events}) == len(events), "an audit event on two pages"

        @rule(owner=st.integers(0, 5), page_size=PAGE_SIZES, scope=st.booleans(), data=st.data())
        def list_audit_events(
            self, owner: int, page_size: int, scope: bool, data: st.DataObject
        ) -> None:
            """The caller's whole trail, or one account's: another owner's account has none."""
            account_id = self.pick_account(data, owner) if scope else ""
            self.check_audit(owner, page_size, account_id)

        @precondition(lambda self: any(len(self.owned(o, deleted=False)) > 1 for o in range(6)))
        @rule(data=st.data(), audit=st.booleans())
        def use_foreign_page_token(self, data: st.DataObject, audit: bool) -> None:
            """A page token only continues its own caller's listing."""
            issuers = [o for o in range(6) if len(self.owned(o, deleted=False)) > 1]
            issuer = data.draw(st.sampled_from(issuers), label="issuer")
            user = data.draw(st.sampled_from([o for o in range(6) if o != issuer]), label="user")
            if audit:
                first_page: Any = self.clients[issuer].list_audit_events(page_size=1)
                call: Any = self.clients[user].list_audit_events
            else:
                first_page = self.clients[issuer].list_accounts(page_size=1)
                call = self.clients[user].list_accounts
            assert first_page.next_page_token
            code, reply = status(call, page_size=1, page_token=first_page.next_page_token)
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (
                f"{self.who(user)} continued {self.who(issuer)}'s listing: {code} {reply}"
            )

        def teardown(self) -> None:
            try:
                for owner in range(len(self.callers)):
                    self.check_listing(owner, 1000, show_deleted=True)
                    self.check_audit(owner, 1000)
            finally:
                self.channel.close()

    return IsolationMachine


@pytest.fixture
def server(make_server: Callable[..., ServerThread]) -> ServerThread:
    """The conftest's server with rate limits off (they have tests of their own)."""
    return make_server(**without_rate_limits())


def test_no_call_reads_changes_or_lists_another_owners_data(server: ServerThread) -> None:
    """Every rule checks its reply against the model; the end of each run lists every owner."""
    run_state_machine_as_test(
        make_machine(server.target),
        settings=property_settings(
            max_examples=budget(ci=30, soak=1000),
            stateful_step_count=budget(ci=50, soak=100),
        ),
    )
