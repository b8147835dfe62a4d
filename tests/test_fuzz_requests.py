"""Fuzzed and corrupt requests to every RPC: only documented status codes, and a refused call
changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import given
from hypothesis import strategies as st
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts_client import AccountClient, Credentials
from support.factories import account_fields
from support.grpc_server import ServerThread
from support.soak import budget, property_settings, without_rate_limits
from support.wire import (
    WIRE_I32,
    WIRE_I64,
    WIRE_LEN,
    WIRE_VARINT,
    Outcome,
    RawBytes,
    RawVarint,
    bytes_field,
    call_raw,
    encode,
    string_field_numbers,
    tag,
    varint,
    varint_field_numbers,
)

S = grpc.StatusCode
# The README's status table for a caller's mistakes; INTERNAL and UNKNOWN are never an answer.
DOCUMENTED = {
    S.OK,
    S.INVALID_ARGUMENT,
    S.NOT_FOUND,
    S.PERMISSION_DENIED,
    S.ALREADY_EXISTS,
    S.FAILED_PRECONDITION,
    S.ABORTED,
    S.RESOURCE_EXHAUSTED,
    S.UNAUTHENTICATED,
}
REQUESTS: dict[str, tuple[type[Message], type[Message]]] = {
    "CreateAccount": (pb.CreateAccountRequest, pb.Account),
    "GetAccount": (pb.GetAccountRequest, pb.Account),
    "ListAccounts": (pb.ListAccountsRequest, pb.ListAccountsResponse),
    "UpdateAccount": (pb.UpdateAccountRequest, pb.Account),
    "DeleteAccount": (pb.DeleteAccountRequest, pb.DeleteAccountResponse),
    "UndeleteAccount": (pb.UndeleteAccountRequest, pb.Account),
    "TestConnection": (pb.TestConnectionRequest, pb.TestConnectionResponse),
    "ListAuditEvents": (pb.ListAuditEventsRequest, pb.ListAuditEventsResponse),
}
MUTATING = {"CreateAccount", "UpdateAccount", "DeleteAccount", "UndeleteAccount", "TestConnection"}
# Loopback is blocked by default: TestConnection of these accounts answers at once, offline.
HOST = "127.0.0.1"
TIMEOUT = 30.0

# -- field values ----------------------------------------------------------------------------

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
SPECIAL_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\x00" * 300,
    "%",
    "_",
    "\\",
    "%_\\",
    "a%",
    "'; DROP TABLE accounts; --",
    '"',
    "\ufeff",
    "\u2028",
    "\x85",
    "\x7f",
    "\u0130" * 200,
    "\U0001f4e7" * 70,
    "..",
    "a@b@c",
    "user@",
    "@host",
    'W/"1"',
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "{12345678-1234-1234-1234-123456789012}",
    "urn:uuid:12345678-1234-1234-1234-123456789012",
    "1" * 40,
    "-1",
    "=",
    "====",
]
BAD_UTF8 = [
    b"\xff\xfe",
    b"\xc0\x80",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80",
    b"\xe2\x82",
    b"a\x80",
    b"\xf8\x88\x80\x80\x80",
]


def _repeat(unit: str, length: int) -> str:
    return (unit * (length // len(unit) + 1))[:length]


HUGE_TEXT = st.builds(
    _repeat,
    st.sampled_from(["a", "\x00", "\u00e9", "\U0001f600", "%"]) | st.text(min_size=1),
    st.integers(256, 100_000),
)
# Text that decodes: NUL, control and special characters, SQL and LIKE metacharacters, huge.
DECODABLE_TEXT = st.one_of(
    st.text(max_size=40), st.sampled_from(SPECIAL_TEXT), HUGE_TEXT, st.text(max_size=300)
)
# What a string field must never hold: lone surrogates (sent as their UTF-8-like bytes, since
# protobuf refuses to serialise them) and other invalid UTF-8.
UNDECODABLE_TEXT = st.one_of(
    st.text(st.characters(categories=["Cs"]) | st.characters(), min_size=1, max_size=20).filter(
        lambda s: any("\ud800" <= c <= "\udfff" for c in s)
    ),
    st.sampled_from(["\ud800", "a\udfffb", "\udc00\ud800"]),
    st.builds(_repeat, st.just("\ud800"), st.integers(256, 100_000)),
    st.sampled_from(BAD_UTF8).map(RawBytes),
    st.binary(max_size=40).map(RawBytes),
)
TEXT: st.SearchStrategy[Any] = st.one_of(
    DECODABLE_TEXT, DECODABLE_TEXT, DECODABLE_TEXT, UNDECODABLE_TEXT
)
INT32: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from([INT32_MIN, INT32_MIN + 1, -1, 0, 1, 59, 60, 121, 1000, 1001, 3601]),
    st.sampled_from([65535, 65536, INT32_MAX, INT32_MAX - 1]),
    st.integers(INT32_MIN, INT32_MAX),
    st.integers(INT32_MAX + 1, 2**64 - 1).map(RawVarint),
    st.integers(-(2**63), INT32_MIN - 1).map(RawVarint),
)
ENUM: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from([0, 1, 2, 3, 4, 5, 99, -1, INT32_MIN, INT32_MAX]),
    st.integers(INT32_MIN, INT32_MAX),
    st.integers(INT32_MAX + 1, 2**64 - 1).map(RawVarint),
)
BOOL: st.SearchStrategy[Any] = st.booleans() | st.integers(2, 2**64 - 1).map(RawVarint)
UUIDS = st.uuids().map(str)


@dataclass(frozen=True)
class Ref:
    """A value taken from the arena's state when the request is sent (so that what hypothesis
    draws does not depend on that state): the `index`-th entry of `pool`, in a `form`."""

    pool: str
    index: int
    form: str = ""


def ref(pool: str, *forms: str) -> st.SearchStrategy[Ref]:
    return st.builds(Ref, st.just(pool), st.integers(0, 255), st.sampled_from(["", *forms]))


VALID: dict[str, st.SearchStrategy[Any]] = {
    "account_name": st.text(min_size=1, max_size=30),
    "email_address": st.builds(lambda: f"fz-{uuid.uuid4().hex[:12]}@example.com"),
    "protocol": st.sampled_from([0, 1, 2]),
    "hostname": st.sampled_from([HOST, "imap.example.com", "IMAP.example.com.", "192.0.2.1"]),
    "port": st.integers(1, 65535),
    "encryption": st.sampled_from([0, 1, 2, 3]),
    "username": st.text(min_size=1, max_size=30),
    "is_sync_enabled": st.booleans(),
    "sync_interval": st.integers(60, 3600),
    "is_enabled": st.booleans(),
    "password": st.text(min_size=1, max_size=30),
    "timeout_seconds": st.integers(1, 3),
    "page_size": st.integers(0, 5),
    "show_deleted": st.booleans(),
    "query": st.text(max_size=10),
    "all_users": st.just(False),
}
FUZZ: dict[str, st.SearchStrategy[Any]] = {
    "protocol": ENUM,
    "encryption": ENUM,
    "port": INT32,
    "sync_interval": INT32,
    "timeout_seconds": INT32,
    "page_size": INT32,
    "is_sync_enabled": BOOL,
    "is_enabled": BOOL,
    "show_deleted": BOOL,
    "all_users": BOOL,
}


def unknown_fields() -> st.SearchStrategy[bytes]:
    """Fields the schema does not have: kept as unknown fields, or a decode error."""
    numbers = st.sampled_from([13, 14, 20, 99, 1000, 2**29 - 1]) | st.integers(13, 2**29 - 1)
    return st.one_of(
        st.just(b""),
        st.builds(lambda n, v: tag(n, WIRE_VARINT) + varint(v), numbers, st.integers(0, 2**64 - 1)),
        st.builds(lambda n, b: bytes_field(n, b), numbers, st.binary(max_size=30)),
        st.builds(lambda n, b: tag(n, WIRE_I32) + b, numbers, st.binary(min_size=4, max_size=4)),
        st.builds(lambda n, b: tag(n, WIRE_I64) + b, numbers, st.binary(min_size=8, max_size=8)),
    )


# -- the callers and what they own -----------------------------------------------------------

# A caller's accounts (deleted ones too) and audit events, serialised: what a call may change.
Snapshot = tuple[list[bytes], list[bytes]]


@dataclass
class Arena:
    """The fuzzing caller, a user of the same tenant and one of another tenant, with accounts
    (live and deleted), credentials and page tokens of each."""

    channel: grpc.Channel
    me: AccountClient
    others: list[AccountClient]
    foreign_ids: list[str] = field(default_factory=list)
    foreign_credentials: list[str] = field(default_factory=list)
    foreign_tokens: list[str] = field(default_factory=list)
    own_tokens: list[str] = field(default_factory=list)
    reused_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    mine: Snapshot = ([], [])  # the caller's
    theirs: list[Snapshot] = field(default_factory=list)  # the others', which must never change

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        assert self.me.caller is not None
        return self.me.caller.metadata()

    def own_accounts(self) -> list[pb.Account]:
        return [pb.Account.FromString(raw) for raw in self.mine[0]]

    def own_ids(self, *, deleted: bool) -> list[str]:
        return [a.id for a in self.own_accounts() if a.HasField("delete_time") == deleted]

    def refresh(self) -> None:
        self.mine = snapshot(self.me)

    def pool(self, name: str) -> list[str]:
        own = self.own_accounts()
        pools = {
            "own_live": self.own_ids(deleted=False),
            "own_deleted": self.own_ids(deleted=True),
            "own_etag": [a.etag for a in own],
            "own_credential": [a.credential_id for a in own],
            "own_token": self.own_tokens,
            "foreign_id": self.foreign_ids,
            "foreign_credential": self.foreign_credentials,
            "foreign_token": self.foreign_tokens,
            "reused_request_id": [self.reused_request_id],
        }
        return pools[name]

    def resolve(self, value: Any) -> Any:
        if not isinstance(value, Ref):
            return value
        pool = self.pool(value.pool)
        picked = pool[value.index % len(pool)]
        forms: dict[str, Callable[[str], str]] = {
            "": str,
            "upper": str.upper,
            "space": lambda v: f" {v}",
            "cut": lambda v: v[:-2],
            "reversed": lambda v: v[::-1],
            "longer": lambda v: v + "A",
        }
        return forms[value.form](picked)

    def ensure_targets(self) -> None:
        """At least two live accounts and a deleted one, so calls meet existing data."""
        live, deleted = self.own_ids(deleted=False), self.own_ids(deleted=True)
        for _ in range(2 - len(live)):
            self.me.create_account(**account_fields(hostname=HOST))
        if not deleted:
            self.me.delete_account(self.me.create_account(**account_fields(hostname=HOST)).id)
        if len(live) < 2 or not deleted:
            self.refresh()


def snapshot(client: AccountClient) -> Snapshot:
    """Everything the caller can see of its own: accounts (deleted ones too) and audit events."""
    accounts = [
        a.SerializeToString(deterministic=True)
        for a in client.iter_accounts(page_size=1000, show_deleted=True)
    ]
    events: list[bytes] = []
    token = ""
    while True:
        page = client.list_audit_events(page_size=1000, page_token=token)
        events.extend(e.SerializeToString(deterministic=True) for e in page.events)
        token = page.next_page_token
        if not token:
            return accounts, events


def make_arena(server: ServerThread) -> Arena:
    channel = grpc.insecure_channel(server.target)
    suffix = uuid.uuid4().hex[:8]
    tenant, other_tenant = f"fuzz-{suffix}", f"other-{suffix}"
    clients = [
        AccountClient(channel, Credentials(t, u), timeout=TIMEOUT)
        for t, u in ((tenant, "me"), (tenant, "peer"), (other_tenant, "me"))
    ]
    arena = Arena(channel, clients[0], clients[1:])
    for client in clients:
        created = [client.create_account(**account_fields(hostname=HOST)) for _ in range(3)]
        client.delete_account(created[0].id)
        page = client.list_accounts(page_size=1)
        audit_page = client.list_audit_events(page_size=1)
        tokens = [page.next_page_token, audit_page.next_page_token]
        if client is arena.me:
            arena.own_tokens = tokens
        else:
            arena.foreign_ids += [a.id for a in created]
            arena.foreign_credentials += [a.credential_id for a in created]
            arena.foreign_tokens += tokens
    arena.refresh()
    arena.theirs = [snapshot(c) for c in arena.others]
    return arena


# -- requests --------------------------------------------------------------------------------


def value_of(name: str, valid: st.SearchStrategy[Any] | None = None) -> st.SearchStrategy[Any]:
    """A valid value of field `name`, or a hostile one."""
    if valid is None:
        valid = VALID.get(name, st.text(max_size=30))
    return st.one_of(valid, FUZZ.get(name, TEXT))


IDS: st.SearchStrategy[Any] = st.one_of(
    ref("own_live", "upper", "space"),
    ref("own_deleted"),
    ref("foreign_id", "upper"),
    UUIDS,
    TEXT,
)
ETAGS: st.SearchStrategy[Any] = st.one_of(st.just(""), ref("own_etag"), st.just('W/"1"'), TEXT)
TOKENS: st.SearchStrategy[Any] = st.one_of(
    st.just(""),
    ref("own_token", "cut", "reversed", "longer"),
    ref("foreign_token"),
    TEXT,
)
CREDENTIALS: st.SearchStrategy[Any] = st.one_of(
    ref("own_credential"), ref("foreign_credential", "upper"), UUIDS, TEXT
)
REQUEST_IDS: st.SearchStrategy[Any] = st.one_of(
    UUIDS, UUIDS.map(str.upper), ref("reused_request_id"), TEXT
)


def optional_fields(names: list[str]) -> dict[str, st.SearchStrategy[Any]]:
    return {name: value_of(name) for name in names}


def create_request(data: st.DataObject) -> dict[str, Any]:
    """A valid request with some fields replaced by hostile values, or left out, and a
    password, a credential id, both or neither (valid or hostile)."""
    values: dict[str, Any] = account_fields(hostname=HOST, password=None)
    fuzzed = data.draw(st.sets(st.sampled_from(CREATE_FIELDS)), label="fuzzed fields")
    for name in sorted(fuzzed):
        valid = REQUEST_IDS if name == "request_id" else None
        choice = data.draw(st.none() | value_of(name, valid), label=name)
        if choice is None:
            values.pop(name, None)
        else:
            values[name] = choice
    secret = data.draw(st.sampled_from(SECRETS), label="secret")
    if secret in ("password", "both"):
        values["password"] = data.draw(value_of("password"), label="password")
    if secret in ("credential_id", "both"):
        values["credential_id"] = data.draw(CREDENTIALS, label="credential_id")
    return values


SECRETS = ["password", "password", "credential_id", "credential_id", "both", "neither"]
CREATE_FIELDS = [
    f.name
    for f in pb.CreateAccountRequest.DESCRIPTOR.fields
    if f.name not in ("password", "credential_id")
]
UPDATE_FIELDS = [
    f.name for f in pb.UpdateAccountRequest.DESCRIPTOR.fields if f.name not in ("id", "etag")
]


SHAPES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "GetAccount": st.fixed_dictionaries({"id": IDS}),
    "UndeleteAccount": st.fixed_dictionaries({"id": IDS}),
    "DeleteAccount": st.fixed_dictionaries({"id": IDS}, optional={"etag": ETAGS}),
    "UpdateAccount": st.fixed_dictionaries(
        {"id": IDS}, optional={"etag": ETAGS, **optional_fields(UPDATE_FIELDS)}
    ),
    "TestConnection": st.fixed_dictionaries(
        {"id": IDS}, optional=optional_fields(["password", "timeout_seconds"])
    ),
    "ListAccounts": st.fixed_dictionaries(
        {},
        optional={
            "page_token": TOKENS,
            **optional_fields(
                ["page_size", "show_deleted", "protocol", "is_enabled", "is_sync_enabled"]
                + ["query", "all_users"]
            ),
        },
    ),
    "ListAuditEvents": st.fixed_dictionaries(
        {},
        optional={
            "page_token": TOKENS,
            "account_id": IDS,
            **optional_fields(["page_size", "all_users"]),
        },
    ),
}


def request_values(method: str, arena: Arena, data: st.DataObject) -> dict[str, Any]:
    """Field values of one `method` request, resolved against the arena's present state."""
    if method == "CreateAccount":
        drawn = create_request(data)
    else:
        drawn = data.draw(SHAPES[method], label="request")
    return {name: arena.resolve(value) for name, value in drawn.items()}


# -- checks ----------------------------------------------------------------------------------


def check_outcome(
    arena: Arena, method: str, outcome: Outcome, sent: Any, *, check_others: bool = True
) -> None:
    """A documented status; an OK reply decodes and shows only the caller's own data; a
    refused call changed nothing; no call changed the other owners' data (unless the caller
    checks that itself, later)."""
    assert outcome.code in DOCUMENTED, (
        f"{method} answered {outcome.code.name} ({outcome.details!r}) to {sent!r:.1500}"
    )
    caller = arena.me.caller
    assert caller is not None
    if outcome.code == S.OK:
        reply = REQUESTS[method][1].FromString(outcome.reply)
        owners: list[tuple[str, str]] = []
        if isinstance(reply, pb.Account):
            owners = [(reply.tenant_id, reply.user_id)]
        elif isinstance(reply, pb.ListAccountsResponse):
            owners = [(a.tenant_id, a.user_id) for a in reply.accounts]
        elif isinstance(reply, pb.ListAuditEventsResponse):
            owners = [(e.tenant_id, e.user_id) for e in reply.events]
        strangers = [o for o in owners if o != (caller.tenant_id, caller.user_id)]
        assert not strangers, f"{method} showed other owners' data {strangers} for {sent!r:.1500}"
    if method not in MUTATING:
        return
    before = arena.mine
    arena.refresh()
    if outcome.code != S.OK:
        assert arena.mine == before, (
            f"{method} was refused with {outcome.code.name} ({outcome.details!r}) but changed "
            f"the caller's accounts or audit trail; request {sent!r:.1500}"
        )
    if check_others:
        check_others_untouched(arena, f"{method} {sent!r:.1500}")


def check_others_untouched(arena: Arena, after: str) -> None:
    theirs, arena.theirs = arena.theirs, [snapshot(c) for c in arena.others]
    assert arena.theirs == theirs, f"another owner's data changed after {after}"


def run_examples(server: ServerThread, examples: int, body: Callable[..., None]) -> None:
    arena = make_arena(server)
    try:

        @property_settings(max_examples=examples)
        @given(data=st.data())
        def fuzz(data: st.DataObject) -> None:
            arena.ensure_targets()
            body(arena, data)

        fuzz()
    finally:
        arena.channel.close()


@pytest.fixture
def server(make_server: Callable[..., ServerThread]) -> ServerThread:
    """The conftest's server with rate limits off (they have tests of their own)."""
    return make_server(**without_rate_limits())


METHODS = pytest.mark.parametrize("method", sorted(REQUESTS))


@METHODS
def test_fuzzed_request_gets_a_documented_status_and_a_refusal_changes_nothing(
    server: ServerThread, method: str
) -> None:
    message_type = REQUESTS[method][0]

    def body(arena: Arena, data: st.DataObject) -> None:
        values = request_values(method, arena, data)
        extra = data.draw(unknown_fields(), label="unknown fields")
        payload = encode(message_type, values) + extra
        outcome = call_raw(arena.channel, method, payload, arena.metadata, timeout=TIMEOUT)
        check_outcome(arena, method, outcome, values)

    run_examples(server, budget(ci=30, soak=1000), body)


# One hostile value at a time in each field, the rest valid: every field meets every kind.
TEXT_CASES: list[Any] = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "%_\\'\"",
    "\u0130" * 127,
    "\U0001f600" * 255,
    "x" * 256,
    "\x00" * 60_000,
    "x" * 100_000,
    "a\udfffb",
    RawBytes(b"\xff\xfe"),
]
INT32_CASES: list[Any] = [INT32_MIN, -1, 0, INT32_MAX, RawVarint(2**32), RawVarint(2**64 - 1)]
ENUM_CASES: list[Any] = [-1, 4, 99, INT32_MAX, INT32_MIN, RawVarint(2**40)]
BOOL_CASES: list[Any] = [RawVarint(2), RawVarint(2**64 - 1)]
BASES: dict[str, dict[str, Any]] = {
    "CreateAccount": {},  # account_fields(), fresh each time
    "GetAccount": {"id": Ref("own_live", 0)},
    "ListAccounts": {"page_size": 2},
    "UpdateAccount": {"id": Ref("own_live", 0), "username": "someone@example.com"},
    "DeleteAccount": {"id": Ref("own_live", 0)},
    "UndeleteAccount": {"id": Ref("own_deleted", 0)},
    "TestConnection": {"id": Ref("own_live", 0), "timeout_seconds": 1},
    "ListAuditEvents": {"page_size": 2},
}


def sweep_cases(message_type: type[Message]) -> list[tuple[str, Any]]:
    by_type = {
        FieldDescriptor.TYPE_STRING: TEXT_CASES,
        FieldDescriptor.TYPE_INT32: INT32_CASES,
        FieldDescriptor.TYPE_ENUM: ENUM_CASES,
        FieldDescriptor.TYPE_BOOL: BOOL_CASES,
    }
    return [(f.name, v) for f in message_type.DESCRIPTOR.fields for v in by_type[f.type]]


@METHODS
def test_each_hostile_value_in_each_field_gets_a_documented_status(
    server: ServerThread, method: str
) -> None:
    """Deterministic companion of the fuzz: every failing case is listed, not just the first."""
    message_type = REQUESTS[method][0]
    arena = make_arena(server)
    failures: list[str] = []
    try:
        for name, value in sweep_cases(message_type):
            arena.ensure_targets()
            base = dict(BASES[method] or account_fields(hostname=HOST))
            if name == "credential_id":
                base.pop("password", None)
            values = {k: arena.resolve(v) for k, v in {**base, name: value}.items()}
            payload = encode(message_type, values)
            outcome = call_raw(arena.channel, method, payload, arena.metadata, timeout=TIMEOUT)
            try:
                check_outcome(arena, method, outcome, values, check_others=False)
            except AssertionError as exc:
                failures.append(f"{name}={value!r:.60}: {str(exc).splitlines()[0]:.300}")
        # Nothing here may touch the other owners: checked once, for speed.
        check_others_untouched(arena, f"the {method} cases")
    finally:
        arena.channel.close()
    assert not failures, f"{len(failures)} failing cases:\n" + "\n".join(failures)


def corrupt_payloads(message_type: type[Message], valid: bytes) -> st.SearchStrategy[bytes]:
    """Bytes that are not a well-formed `message_type`, or only barely are."""
    strings = string_field_numbers(message_type)
    numbers = [f.number for f in message_type.DESCRIPTOR.fields]
    bad_utf8 = st.sampled_from(BAD_UTF8) | st.binary(min_size=1, max_size=20).filter(_not_utf8)
    wrong_types = {
        n: [
            w
            for w in (WIRE_VARINT, WIRE_I64, WIRE_LEN, WIRE_I32)
            if w != _wire_type(n, message_type)
        ]
        for n in numbers
    }
    pieces = st.one_of(
        # Invalid UTF-8 inside a string field: e.g. field 1, 0x0a, length, b"\xff\xfe".
        st.builds(bytes_field, st.sampled_from(strings), bad_utf8),
        # A field with the wrong wire type for its number.
        st.sampled_from(numbers).flatmap(
            lambda n: st.builds(
                lambda w, b: tag(n, w) + b, st.sampled_from(wrong_types[n]), st.binary(max_size=12)
            )
        ),
        # A length prefix past the end, a cut varint, groups and reserved wire types.
        st.builds(
            lambda n, length, b: tag(n, WIRE_LEN) + varint(length) + b,
            st.sampled_from(numbers),
            st.integers(20, 2**64 - 1),
            st.binary(max_size=10),
        ),
        st.builds(lambda n: tag(n, WIRE_VARINT) + b"\xff" * 11, st.sampled_from(numbers)),
        st.builds(lambda n, w: tag(n, w), st.integers(0, 2**29 - 1), st.sampled_from([3, 4, 6, 7])),
        st.sampled_from([b"\x00", b"\x80", b"\xff" * 10, b"\x0a", b"\x0a\xff\xff\xff\xff\x0f"]),
        st.binary(max_size=200),
    )
    # Positions are drawn independently of `valid`'s length (it depends on the arena's state),
    # so that a replayed example draws the same way.
    positions = st.integers(0, 2**16)
    return st.one_of(
        pieces,
        st.builds(lambda p: valid + p, pieces),
        st.builds(lambda p: p + valid, pieces),
        positions.map(lambda i: valid[: i % (len(valid) + 1)]),
        st.builds(lambda i, b: _replace_byte(valid, i, b), positions, st.integers(0, 255)),
    )


def _replace_byte(data: bytes, position: int, value: int) -> bytes:
    if not data:
        return bytes([value])
    i = position % len(data)
    return data[:i] + bytes([value]) + data[i + 1 :]


def _not_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _wire_type(number: int, message_type: type[Message]) -> int:
    return WIRE_VARINT if number in varint_field_numbers(message_type) else WIRE_LEN


@METHODS
def test_corrupt_request_bytes_get_a_documented_status_and_change_nothing(
    server: ServerThread, method: str
) -> None:
    message_type = REQUESTS[method][0]

    def body(arena: Arena, data: st.DataObject) -> None:
        values = request_values(method, arena, data)
        base = _well_formed(message_type, values)
        payload = data.draw(corrupt_payloads(message_type, base), label="payload")
        outcome = call_raw(arena.channel, method, payload, arena.metadata, timeout=TIMEOUT)
        check_outcome(arena, method, outcome, payload)

    run_examples(server, budget(ci=30, soak=1000), body)


def _well_formed(message_type: type[Message], values: dict[str, Any]) -> bytes:
    """`values` as a message the runtime accepts: hostile values that it refuses are left out."""
    message = message_type()
    for name, value in values.items():
        try:
            setattr(message, name, value)
        except (TypeError, ValueError):
            continue
    return message.SerializeToString()
