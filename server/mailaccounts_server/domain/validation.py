"""Field rules of the account API; every violation is collected so callers can fix all at once."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from mailaccounts_server.domain.enums import Encryption, Protocol
from mailaccounts_server.domain.errors import FieldViolation, ValidationError
from mailaccounts_server.domain.model import AccountPatch, NewAccount

PORT_MIN, PORT_MAX = 1, 65535
SYNC_INTERVAL_MIN, SYNC_INTERVAL_MAX, SYNC_INTERVAL_DEFAULT = 60, 3600, 300
MAX_TEXT = 255
MAX_PASSWORD = 1024
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


@dataclass(slots=True)
class _Collector:
    """Gathers violations of one request, then raises them together."""

    violations: list[FieldViolation] = field(default_factory=list)

    def add(self, name: str, description: str) -> None:
        self.violations.append(FieldViolation(name, description))

    def raise_if_any(self) -> None:
        if self.violations:
            raise ValidationError(self.violations)


def email_problem(value: str) -> str | None:
    """Why an email address is unacceptable, or None when it is fine."""
    if _SPACE_OR_CONTROL.search(value):
        return "must not contain spaces or control characters"
    if value.count("@") != 1:
        return "must contain exactly one @"
    local, domain = value.split("@")
    if not local:
        return "must have a non-empty part before the @"
    if not domain or domain.startswith(".") or domain.endswith(".") or ".." in domain:
        return "must have a valid domain after the @"
    # The limit is on the address as given: its lower-cased form may be longer ('İ' folds to
    # two characters), and storage sizes the normalised column for that on every database.
    if len(value) > 254:
        return "must be at most 254 characters"
    return None


def hostname_problem(value: str) -> str | None:
    """Why a mail server hostname is unacceptable, or None when it is fine."""
    if len(value) > 253:
        return "must be at most 253 characters"
    if "%" in value or _CONTROL.search(value):
        return "must be a DNS name or an IP address (no scope id or control characters)"
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    labels = value.rstrip(".").split(".")
    if not all(_HOST_LABEL.match(label) for label in labels):
        return "must be a DNS name or an IP address"
    return None


# C0 and C1 control characters (U+0085 NEL among them, which str.strip() would also remove).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_QUERY = 255


def _check_text(c: _Collector, name: str, value: str, *, required: bool) -> None:
    if _CONTROL.search(value):
        c.add(name, f"{name} must not contain control characters")
    elif not value.strip():
        if required:
            c.add(name, f"{name} is required")
        else:
            c.add(name, f"{name} must not be empty")
    elif len(value) > MAX_TEXT:
        c.add(name, f"{name} must be at most {MAX_TEXT} characters")


def _check_port(c: _Collector, port: int) -> None:
    if not PORT_MIN <= port <= PORT_MAX:
        c.add("port", f"port must be between {PORT_MIN} and {PORT_MAX}, got {port}")


def _check_sync_interval(c: _Collector, value: int) -> None:
    if not SYNC_INTERVAL_MIN <= value <= SYNC_INTERVAL_MAX:
        c.add(
            "syncInterval",
            f"syncInterval must be between {SYNC_INTERVAL_MIN} and {SYNC_INTERVAL_MAX} "
            f"seconds, got {value}",
        )


def _check_email(c: _Collector, value: str) -> None:
    problem = email_problem(value)
    if problem:
        c.add("emailAddress", f"emailAddress {problem}")


def _check_hostname(c: _Collector, value: str) -> None:
    problem = hostname_problem(value)
    if problem:
        c.add("hostname", f"hostname {problem}")


def _check_password(c: _Collector, value: str) -> None:
    if not value:
        c.add("password", "password must not be empty")
    elif "\x00" in value:
        c.add("password", "password must not contain NUL characters")
    elif len(value) > MAX_PASSWORD:
        c.add("password", f"password must be at most {MAX_PASSWORD} characters")


def validate_new_account(
    *,
    account_name: str,
    email_address: str,
    protocol: Protocol | None,
    hostname: str,
    port: int | None,
    encryption: Encryption | None,
    username: str,
    credential_id: str,
    password: str | None,
    is_sync_enabled: bool | None,
    sync_interval: int | None,
    request_id: str,
) -> NewAccount:
    """Checks a create request and applies the defaults; raises ValidationError."""
    c = _Collector()
    _check_text(c, "accountName", account_name, required=True)
    if email_address.strip():
        _check_email(c, email_address)
    else:
        c.add("emailAddress", "emailAddress is required")
    if hostname.strip():
        _check_hostname(c, hostname)
    else:
        c.add("hostname", "hostname is required")
    if port is None:
        c.add("port", "port is required")
    else:
        _check_port(c, port)
    _check_text(c, "username", username, required=True)
    if credential_id and password is not None:
        c.add("password", "give either credentialId or password, not both")
    elif not credential_id and password is None:
        c.add("credentialId", "credentialId is required (or give a password to store)")
    elif password is not None:
        _check_password(c, password)
    elif len(credential_id) > MAX_TEXT:
        c.add("credentialId", f"credentialId must be at most {MAX_TEXT} characters")
    elif not _is_uuid(credential_id):
        # Credential ids are the UUIDs the server made: anything else names none of yours
        # (the same words as an unknown or foreign id, so nothing is revealed).
        c.add("credentialId", "credentialId does not name one of your credentials")
    if sync_interval is not None:
        _check_sync_interval(c, sync_interval)
    if request_id and not _is_uuid(request_id):
        c.add("requestId", "requestId must be a UUID (8-4-4-4-12 hex digits)")
    c.raise_if_any()
    return NewAccount(
        account_name=account_name.strip(),
        email_address=email_address,
        protocol=protocol or Protocol.IMAP,
        hostname=hostname,
        port=port or 0,
        encryption=encryption or Encryption.TLS,
        username=username,
        credential_id=credential_id or None,
        password=password,
        is_sync_enabled=True if is_sync_enabled is None else is_sync_enabled,
        sync_interval=SYNC_INTERVAL_DEFAULT if sync_interval is None else sync_interval,
        request_id=_canonical_uuid(request_id) if request_id else None,
    )


def validate_patch(present: dict[str, Any], password: str | None) -> AccountPatch:
    """Checks the fields present in an update; raises ValidationError.

    `present` maps model field names (snake_case) to their new values.
    """
    c = _Collector()
    changes = dict(present)
    if "account_name" in changes:
        _check_text(c, "accountName", changes["account_name"], required=False)
        changes["account_name"] = changes["account_name"].strip()
    if "email_address" in changes:
        _check_email(c, changes["email_address"])
    if "hostname" in changes:
        _check_hostname(c, changes["hostname"])
    if "port" in changes:
        _check_port(c, changes["port"])
    if "username" in changes:
        _check_text(c, "username", changes["username"], required=False)
    if "sync_interval" in changes:
        _check_sync_interval(c, changes["sync_interval"])
    if password is not None:
        _check_password(c, password)
    c.raise_if_any()
    return AccountPatch(changes=changes, password=password)


def validate_id(value: str, name: str = "id") -> str:
    """Checks an account id is present; ids are UUIDs, so anything else cannot exist."""
    if not value:
        raise ValidationError([FieldViolation(name, f"{name} is required")])
    if not _is_uuid(value):
        raise ValidationError([FieldViolation(name, f"{name} must be a UUID")])
    return _canonical_uuid(value)


def validate_query(value: str) -> str | None:
    """The ListAccounts substring filter, stripped; None when empty."""
    if _CONTROL.search(value):
        raise ValidationError(
            [FieldViolation("query", "query must not contain control characters")]
        )
    if len(value) > MAX_QUERY:
        raise ValidationError(
            [FieldViolation("query", f"query must be at most {MAX_QUERY} characters")]
        )
    return value.strip() or None


def validate_page_size(page_size: int, *, default: int = 50, maximum: int = 1000) -> int:
    """Applies the page-size default and bounds."""
    if page_size < 0:
        raise ValidationError([FieldViolation("pageSize", "pageSize must not be negative")])
    if page_size == 0:
        return default
    return min(page_size, maximum)


_UUID_TEXT = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


def _is_uuid(value: str) -> bool:
    """Only the canonical 36-character form: `uuid.UUID` also takes braces, `urn:uuid:` and
    bare hex, which would make one id look like several."""
    return bool(_UUID_TEXT.match(value))


def _canonical_uuid(value: str) -> str:
    return value.lower()
