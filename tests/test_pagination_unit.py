"""PageTokenCodec called directly: signed, bound to caller and query, rotation-safe."""

from __future__ import annotations

import base64

import pytest
from mailaccounts_server.domain.errors import ValidationError
from mailaccounts_server.domain.model import Caller
from mailaccounts_server.domain.pagination import PageTokenCodec

OLD_SECRET = b"old-secret-0123456789abcdef"
NEW_SECRET = b"new-secret-fedcba9876543210"
CALLER = Caller(tenant_id="tenant-1", user_id="user-1")
SCOPE = "accounts:protocol=imap"
CURSOR = (1_700_000_000_123_456, "0f8fad5b-d9cb-469f-a165-70867728950e")


def refusal(codec: PageTokenCodec, token: str, caller: Caller = CALLER, scope: str = SCOPE) -> str:
    """The pageToken violation `decode` raises for `token`."""
    with pytest.raises(ValidationError) as info:
        codec.decode(token, caller, scope)
    assert [v.field for v in info.value.violations] == ["pageToken"]
    return info.value.violations[0].description


def raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def text(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.fixture
def codec() -> PageTokenCodec:
    return PageTokenCodec([NEW_SECRET])


def test_token_round_trips_the_cursor(codec: PageTokenCodec) -> None:
    token = codec.encode(CALLER, SCOPE, CURSOR)
    assert codec.decode(token, CALLER, SCOPE) == CURSOR


def test_token_is_url_safe_without_padding(codec: PageTokenCodec) -> None:
    token = codec.encode(CALLER, SCOPE, CURSOR)
    assert token
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_token_does_not_depend_on_the_callers_actor_or_roles(codec: PageTokenCodec) -> None:
    token = codec.encode(CALLER, SCOPE, CURSOR)
    admin = Caller(tenant_id="tenant-1", user_id="user-1", roles=frozenset({"tenant_admin"}))
    assert codec.decode(token, admin, SCOPE) == CURSOR


@pytest.mark.parametrize(
    ("caller", "scope"),
    [
        (Caller(tenant_id="tenant-2", user_id="user-1"), SCOPE),
        (Caller(tenant_id="tenant-1", user_id="user-2"), SCOPE),
        (CALLER, "accounts:protocol=pop3"),
        (CALLER, ""),
    ],
    ids=["other-tenant", "other-user", "other-scope", "empty-scope"],
)
def test_token_used_by_another_caller_or_scope_is_refused(
    codec: PageTokenCodec, caller: Caller, scope: str
) -> None:
    token = codec.encode(CALLER, SCOPE, CURSOR)
    assert "not valid for this caller and query" in refusal(codec, token, caller, scope)


def test_tenant_and_user_cannot_be_shifted_into_each_other(codec: PageTokenCodec) -> None:
    token = codec.encode(Caller(tenant_id="ab", user_id="c"), SCOPE, CURSOR)
    refusal(codec, token, Caller(tenant_id="a", user_id="bc"))


@pytest.mark.parametrize("index", [0, 15, 16, -1], ids=["sig-first", "sig-last", "body", "end"])
def test_token_with_a_changed_byte_is_refused(codec: PageTokenCodec, index: int) -> None:
    data = bytearray(raw(codec.encode(CALLER, SCOPE, CURSOR)))
    data[index] ^= 0x01
    assert "not valid" in refusal(codec, text(bytes(data)))


def test_truncated_token_is_refused(codec: PageTokenCodec) -> None:
    token = codec.encode(CALLER, SCOPE, CURSOR)
    refusal(codec, text(raw(token)[:-1]))


def test_empty_token_is_refused(codec: PageTokenCodec) -> None:
    refusal(codec, "")


@pytest.mark.parametrize("token", ["a", "ab$$", "abcde"])
def test_malformed_base64_is_refused(codec: PageTokenCodec, token: str) -> None:
    assert refusal(codec, token) == "pageToken is malformed"


def test_non_base64_characters_are_refused(codec: PageTokenCodec) -> None:
    refusal(codec, "!!!!")


def test_token_of_the_older_secret_is_accepted_while_it_is_second() -> None:
    token = PageTokenCodec([OLD_SECRET]).encode(CALLER, SCOPE, CURSOR)
    rotated = PageTokenCodec([NEW_SECRET, OLD_SECRET])
    assert rotated.decode(token, CALLER, SCOPE) == CURSOR


def test_rotated_codec_signs_with_the_new_secret() -> None:
    token = PageTokenCodec([NEW_SECRET, OLD_SECRET]).encode(CALLER, SCOPE, CURSOR)
    assert PageTokenCodec([NEW_SECRET]).decode(token, CALLER, SCOPE) == CURSOR
    refusal(PageTokenCodec([OLD_SECRET]), token)


def test_token_of_a_removed_secret_is_refused() -> None:
    token = PageTokenCodec([OLD_SECRET]).encode(CALLER, SCOPE, CURSOR)
    assert "not valid" in refusal(PageTokenCodec([NEW_SECRET]), token)


def test_older_secret_still_binds_the_token_to_its_caller() -> None:
    token = PageTokenCodec([OLD_SECRET]).encode(CALLER, SCOPE, CURSOR)
    rotated = PageTokenCodec([NEW_SECRET, OLD_SECRET])
    refusal(rotated, token, Caller(tenant_id="tenant-2", user_id="user-1"))
