"""The field rules of domain.validation called directly: no server, no database."""

from __future__ import annotations

from typing import Any

import pytest
from mailaccounts_server.domain.enums import Encryption, Protocol
from mailaccounts_server.domain.errors import ValidationError
from mailaccounts_server.domain.validation import (
    MAX_PASSWORD,
    MAX_QUERY,
    MAX_TEXT,
    email_problem,
    hostname_problem,
    validate_id,
    validate_new_account,
    validate_page_size,
    validate_patch,
    validate_query,
)

ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def new_account_args(**overrides: Any) -> dict[str, Any]:
    """Valid validate_new_account arguments, optional ones left unset."""
    args: dict[str, Any] = {
        "account_name": "Work Email",
        "email_address": "user@company.com",
        "protocol": None,
        "hostname": "imap.company.com",
        "port": 993,
        "encryption": None,
        "username": "user@company.com",
        "credential_id": "",
        "password": "Corr3ct-Horse-Battery",
        "is_sync_enabled": None,
        "sync_interval": None,
        "request_id": "",
    }
    args.update(overrides)
    return args


def violations(fn: Any, *args: Any, **kwargs: Any) -> dict[str, str]:
    """field -> description of the ValidationError that `fn` raises."""
    with pytest.raises(ValidationError) as info:
        fn(*args, **kwargs)
    found = {v.field: v.description for v in info.value.violations}
    assert len(found) == len(info.value.violations), "one field reported twice"
    return found


def create_violations(**overrides: Any) -> dict[str, str]:
    return violations(validate_new_account, **new_account_args(**overrides))


# -- validate_new_account: required fields and defaults -------------------------------------


def test_new_account_with_only_required_fields_gets_the_defaults() -> None:
    account = validate_new_account(**new_account_args())
    assert account.protocol is Protocol.IMAP
    assert account.encryption is Encryption.TLS
    assert account.is_sync_enabled is True
    assert account.sync_interval == 300
    assert account.credential_id is None
    assert account.request_id is None
    assert account.password == "Corr3ct-Horse-Battery"


def test_new_account_keeps_the_given_optional_values() -> None:
    account = validate_new_account(
        **new_account_args(
            protocol=Protocol.POP3,
            encryption=Encryption.STARTTLS,
            is_sync_enabled=False,
            sync_interval=900,
        )
    )
    assert account.protocol is Protocol.POP3
    assert account.encryption is Encryption.STARTTLS
    assert account.is_sync_enabled is False
    assert account.sync_interval == 900


def test_new_account_name_is_stripped() -> None:
    assert validate_new_account(**new_account_args(account_name="  Work  ")).account_name == "Work"


def test_new_account_request_id_is_stored_in_lower_case() -> None:
    account = validate_new_account(**new_account_args(request_id=ID.upper()))
    assert account.request_id == ID


@pytest.mark.parametrize(
    ("arg", "empty", "field"),
    [
        ("account_name", "", "accountName"),
        ("email_address", "", "emailAddress"),
        ("hostname", "", "hostname"),
        ("port", None, "port"),
        ("username", "", "username"),
    ],
)
def test_new_account_without_required_field_names_it(arg: str, empty: Any, field: str) -> None:
    found = create_violations(**{arg: empty})
    assert set(found) == {field}
    assert found[field] == f"{field} is required"


@pytest.mark.parametrize("arg", ["account_name", "email_address", "hostname", "username"])
def test_new_account_with_blank_required_text_is_refused(arg: str) -> None:
    found = create_violations(**{arg: "   "})
    assert len(found) == 1
    assert next(iter(found.values())).endswith("is required")


def test_new_account_without_password_or_credential_id_needs_credential_id() -> None:
    assert set(create_violations(password=None)) == {"credentialId"}


def test_new_account_with_credential_id_and_no_password_is_accepted() -> None:
    credential_id = "0f8fad5b-d9cb-469f-a165-70867728950e"
    account = validate_new_account(**new_account_args(password=None, credential_id=credential_id))
    assert account.credential_id == credential_id
    assert account.password is None


@pytest.mark.parametrize("credential_id", ["cred-1", "a\x00b", "0f8fad5b-d9cb-469f-a165"])
def test_credential_id_that_is_not_a_uuid_names_none_of_yours(credential_id: str) -> None:
    found = create_violations(password=None, credential_id=credential_id)
    assert found == {"credentialId": "credentialId does not name one of your credentials"}


def test_new_account_with_both_credential_id_and_password_is_refused_on_password() -> None:
    found = create_violations(credential_id="cred-1")
    assert set(found) == {"password"}
    assert "not both" in found["password"]


def test_new_account_reports_every_violation_at_once() -> None:
    found = create_violations(
        account_name="",
        email_address="nope",
        hostname="bad host!",
        port=70000,
        username="",
        sync_interval=5,
        request_id="retry-1",
    )
    assert set(found) == {
        "accountName",
        "emailAddress",
        "hostname",
        "port",
        "username",
        "syncInterval",
        "requestId",
    }
    assert "70000" in found["port"]
    assert found["syncInterval"].endswith("got 5")


# -- validate_new_account: one rule at a time -----------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"account_name": "a\x00b"}, "accountName"),
        ({"account_name": "x" * (MAX_TEXT + 1)}, "accountName"),
        ({"username": "a\tb"}, "username"),
        ({"username": "x" * (MAX_TEXT + 1)}, "username"),
        ({"email_address": "a@b@c.com"}, "emailAddress"),
        ({"hostname": "fe80::1%eth0"}, "hostname"),
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"port": -1}, "port"),
        ({"sync_interval": 59}, "syncInterval"),
        ({"sync_interval": 3601}, "syncInterval"),
        ({"password": ""}, "password"),
        ({"password": "pw\x00x"}, "password"),
        ({"password": "x" * (MAX_PASSWORD + 1)}, "password"),
        ({"password": None, "credential_id": "c" * (MAX_TEXT + 1)}, "credentialId"),
        ({"request_id": "{" + ID + "}"}, "requestId"),
        ({"request_id": "urn:uuid:" + ID}, "requestId"),
        ({"request_id": ID.replace("-", "")}, "requestId"),
    ],
    ids=[
        "name-control",
        "name-too-long",
        "username-control",
        "username-too-long",
        "email",
        "hostname-scope-id",
        "port-0",
        "port-65536",
        "port-negative",
        "sync-59",
        "sync-3601",
        "password-empty",
        "password-nul",
        "password-too-long",
        "credential-id-too-long",
        "request-id-braces",
        "request-id-urn",
        "request-id-bare-hex",
    ],
)
def test_new_account_rule_is_reported_on_its_field(overrides: dict[str, Any], field: str) -> None:
    found = create_violations(**overrides)
    assert set(found) == {field}
    assert found[field].startswith(field)


@pytest.mark.parametrize(
    "overrides",
    [
        {"account_name": "x" * MAX_TEXT},
        {"port": 1},
        {"port": 65535},
        {"sync_interval": 60},
        {"sync_interval": 3600},
        {"password": "x" * MAX_PASSWORD},
        {"hostname": "2001:db8::1"},
        {"hostname": "imap.company.com."},
    ],
    ids=[
        "name-max",
        "port-1",
        "port-65535",
        "sync-60",
        "sync-3600",
        "password-max",
        "ipv6",
        "trailing-dot",
    ],
)
def test_new_account_values_at_the_limits_are_accepted(overrides: dict[str, Any]) -> None:
    account = validate_new_account(**new_account_args(**overrides))
    for arg, value in overrides.items():
        assert getattr(account, arg) == value


# -- validate_patch -------------------------------------------------------------------------


def test_empty_patch_is_accepted_and_changes_nothing() -> None:
    patch = validate_patch({}, None)
    assert patch.changes == {}
    assert patch.changed_fields() == []


def test_patch_checks_only_the_present_fields() -> None:
    patch = validate_patch({"port": 995}, None)
    assert patch.changes == {"port": 995}
    assert patch.changed_fields() == ["port"]


def test_patch_account_name_is_stripped() -> None:
    assert validate_patch({"account_name": " Home "}, None).changes == {"account_name": "Home"}


def test_patch_password_is_listed_as_changed_but_kept_out_of_changes() -> None:
    patch = validate_patch({"hostname": "pop.example.org"}, "N3w-Password")
    assert patch.password == "N3w-Password"
    assert "password" not in patch.changes
    assert patch.changed_fields() == ["hostname", "password"]


@pytest.mark.parametrize(
    ("present", "password", "field"),
    [
        ({"account_name": "  "}, None, "accountName"),
        ({"account_name": "a\x00b"}, None, "accountName"),
        ({"email_address": "no-at-sign"}, None, "emailAddress"),
        ({"hostname": "bad host"}, None, "hostname"),
        ({"port": 0}, None, "port"),
        ({"username": ""}, None, "username"),
        ({"sync_interval": 3601}, None, "syncInterval"),
        ({}, "", "password"),
        ({}, "pw\x00x", "password"),
    ],
)
def test_patch_rule_is_reported_on_its_field(
    present: dict[str, Any], password: str | None, field: str
) -> None:
    assert set(violations(validate_patch, present, password)) == {field}


def test_blank_name_in_a_patch_must_not_be_empty_rather_than_required() -> None:
    found = violations(validate_patch, {"account_name": ""}, None)
    assert found["accountName"] == "accountName must not be empty"


def test_patch_reports_every_violation_at_once() -> None:
    found = violations(validate_patch, {"port": 0, "sync_interval": 1, "hostname": "a b"}, "")
    assert set(found) == {"port", "syncInterval", "hostname", "password"}


# -- validate_id, validate_query, validate_page_size ----------------------------------------


def test_id_is_returned_in_lower_case() -> None:
    assert validate_id(ID.upper()) == ID


def test_missing_id_is_required() -> None:
    assert violations(validate_id, "") == {"id": "id is required"}


@pytest.mark.parametrize("value", ["42", "{" + ID + "}", "urn:uuid:" + ID, ID.replace("-", "")])
def test_non_canonical_id_is_refused(value: str) -> None:
    assert violations(validate_id, value) == {"id": "id must be a UUID"}


def test_id_violation_uses_the_given_field_name() -> None:
    assert set(violations(validate_id, "nope", "credentialId")) == {"credentialId"}


@pytest.mark.parametrize(("value", "expected"), [("", None), ("   ", None), (" boss ", "boss")])
def test_query_is_stripped_and_empty_means_none(value: str, expected: str | None) -> None:
    assert validate_query(value) == expected


def test_query_of_the_maximum_length_is_accepted() -> None:
    assert validate_query("x" * MAX_QUERY) == "x" * MAX_QUERY


@pytest.mark.parametrize("value", ["a\x00b", "a\nb", "x" * (MAX_QUERY + 1)])
def test_bad_query_is_refused_on_query(value: str) -> None:
    assert set(violations(validate_query, value)) == {"query"}


@pytest.mark.parametrize(
    ("page_size", "expected"), [(0, 50), (1, 1), (50, 50), (1000, 1000), (1001, 1000)]
)
def test_page_size_default_and_maximum(page_size: int, expected: int) -> None:
    assert validate_page_size(page_size) == expected


def test_page_size_default_and_maximum_can_be_chosen() -> None:
    assert validate_page_size(0, default=10, maximum=20) == 10
    assert validate_page_size(21, default=10, maximum=20) == 20


def test_negative_page_size_is_refused() -> None:
    assert set(violations(validate_page_size, -1)) == {"pageSize"}


# -- email_problem --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "email",
    [
        "user@example.com",
        "first.last+tag@sub.example.co.uk",
        "a@b",
        "x" * (254 - len("@example.com")) + "@example.com",
    ],
    ids=["plain", "plus-subdomain", "short", "254-chars"],
)
def test_good_email_has_no_problem(email: str) -> None:
    assert email_problem(email) is None


@pytest.mark.parametrize(
    ("email", "problem"),
    [
        ("us er@example.com", "spaces or control"),
        ("user@exa\tmple.com", "spaces or control"),
        ("user\x00@example.com", "spaces or control"),
        ("userexample.com", "exactly one @"),
        ("a@b@c.com", "exactly one @"),
        ("@example.com", "before the @"),
        ("user@", "valid domain"),
        ("user@.example.com", "valid domain"),
        ("user@example.com.", "valid domain"),
        ("user@example..com", "valid domain"),
        ("x" * (255 - len("@example.com")) + "@example.com", "at most 254"),
    ],
    ids=[
        "space",
        "tab",
        "nul",
        "no-at",
        "two-ats",
        "empty-local",
        "empty-domain",
        "leading-dot",
        "trailing-dot",
        "double-dot",
        "255-chars",
    ],
)
def test_bad_email_problem_says_why(email: str, problem: str) -> None:
    found = email_problem(email)
    assert found is not None
    assert problem in found


# -- hostname_problem -----------------------------------------------------------------------

HOST_253 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])


@pytest.mark.parametrize(
    "hostname",
    [
        "imap.company.com",
        "imap.company.com.",
        "localhost",
        "xn--bcher-kva.example",
        "a-b.example",
        "a" * 63 + ".example",
        "192.0.2.1",
        "::1",
        "2001:db8::1",
        "::ffff:192.0.2.1",
    ],
    ids=[
        "dns",
        "trailing-dot",
        "single-label",
        "punycode",
        "inner-hyphen",
        "63-char-label",
        "ipv4",
        "ipv6-loopback",
        "ipv6",
        "ipv4-mapped-ipv6",
    ],
)
def test_good_hostname_has_no_problem(hostname: str) -> None:
    assert hostname_problem(hostname) is None


def test_hostname_may_have_253_characters_but_not_254() -> None:
    assert len(HOST_253) == 253
    assert hostname_problem(HOST_253) is None
    assert hostname_problem(HOST_253 + "d") == "must be at most 253 characters"


@pytest.mark.parametrize(
    ("hostname", "problem"),
    [
        ("fe80::1%eth0", "no scope id"),
        ("fe80::1%25eth0", "no scope id"),
        ("imap\x00.example.com", "control characters"),
        ("imap.example.com\n", "control characters"),
        ("bad host", "DNS name or an IP address"),
        ("imap..example.com", "DNS name or an IP address"),
        (".imap.example.com", "DNS name or an IP address"),
        ("-imap.example.com", "DNS name or an IP address"),
        ("imap-.example.com", "DNS name or an IP address"),
        ("a" * 64 + ".example", "DNS name or an IP address"),
        ("imap_1.example.com", "DNS name or an IP address"),
        ("[::1]", "DNS name or an IP address"),
        ("imap.example.com:993", "DNS name or an IP address"),
    ],
    ids=[
        "scope-id",
        "encoded-scope-id",
        "nul",
        "newline",
        "space",
        "empty-label",
        "leading-dot",
        "leading-hyphen",
        "trailing-hyphen",
        "64-char-label",
        "underscore",
        "bracketed-ipv6",
        "with-port",
    ],
)
def test_bad_hostname_problem_says_why(hostname: str, problem: str) -> None:
    found = hostname_problem(hostname)
    assert found is not None
    assert problem in found
