"""Conversions between protobuf messages and domain objects; no rules live here."""

from __future__ import annotations

import dataclasses
import operator
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from mailaccounts.v1 import account_service_pb2 as pb

from mailaccounts_server.domain.connection_tests import ConnectionTestOutcome
from mailaccounts_server.domain.enums import Encryption, Protocol
from mailaccounts_server.domain.model import Account
from mailaccounts_server.domain.ports import AuditRecord
from mailaccounts_server.mail import ErrorCode, FolderKind

PROTOCOL_TO_PB = {Protocol.IMAP: pb.PROTOCOL_IMAP, Protocol.POP3: pb.PROTOCOL_POP3}
PROTOCOL_FROM_PB = {v: k for k, v in PROTOCOL_TO_PB.items()}
ENCRYPTION_TO_PB = {
    Encryption.TLS: pb.ENCRYPTION_TLS,
    Encryption.STARTTLS: pb.ENCRYPTION_STARTTLS,
    Encryption.NONE: pb.ENCRYPTION_NONE,
}
ENCRYPTION_FROM_PB = {v: k for k, v in ENCRYPTION_TO_PB.items()}
_AUDIT_ACTIONS = {
    "CREATE": pb.AUDIT_ACTION_CREATE,
    "UPDATE": pb.AUDIT_ACTION_UPDATE,
    "DELETE": pb.AUDIT_ACTION_DELETE,
    "UNDELETE": pb.AUDIT_ACTION_UNDELETE,
    "TEST_CONNECTION": pb.AUDIT_ACTION_TEST_CONNECTION,
}
_FOLDER_KINDS = {kind: pb.FolderType.Value(f"FOLDER_TYPE_{kind.name}") for kind in FolderKind}
_ERROR_CODES = {
    code: pb.ConnectionErrorCode.Value(f"CONNECTION_ERROR_CODE_{code.name}") for code in ErrorCode
}
_AUDIT_OUTCOMES = {"SUCCESS": pb.AUDIT_OUTCOME_SUCCESS, "FAILURE": pb.AUDIT_OUTCOME_FAILURE}


def _set_time(field: Timestamp, us: int) -> None:
    seconds, micros = divmod(us, 1_000_000)
    field.seconds = seconds
    field.nanos = micros * 1000


def timestamp(us: int) -> Timestamp:
    """A Timestamp from microseconds since the epoch."""
    seconds, micros = divmod(us, 1_000_000)
    return Timestamp(seconds=seconds, nanos=micros * 1000)


def _error_code_by_name(name: str | None) -> pb.ConnectionErrorCode.ValueType:
    if name is None or name not in ErrorCode.__members__:
        return pb.CONNECTION_ERROR_CODE_UNSPECIFIED
    return _ERROR_CODES[ErrorCode[name]]


# Scalar fields named alike in the domain Account and the proto Account are copied as they are,
# so a new one needs no line here; enums, times and the derived fields are converted below.
_PB_ACCOUNT = pb.Account.DESCRIPTOR.fields_by_name
_COPIED = tuple(
    f.name
    for f in dataclasses.fields(Account)
    if f.name in _PB_ACCOUNT
    and _PB_ACCOUNT[f.name].message_type is None
    and _PB_ACCOUNT[f.name].enum_type is None
)
_read_copied = operator.attrgetter(*_COPIED)


def account_to_pb(a: Account) -> pb.Account:
    msg = pb.Account(
        **dict(zip(_COPIED, _read_copied(a), strict=True)),
        protocol=PROTOCOL_TO_PB[a.protocol],
        encryption=ENCRYPTION_TO_PB[a.encryption],
        etag=a.etag,
        password_required=a.password_required,
    )
    # Setting the fields in place is half the cost of building and copying Timestamps.
    _set_time(msg.created_at, a.created_at_us)
    _set_time(msg.updated_at, a.updated_at_us)
    if a.last_sync_at_us is not None:
        _set_time(msg.last_sync_at, a.last_sync_at_us)
    if a.deleted_at_us is not None:
        _set_time(msg.delete_time, a.deleted_at_us)
    if a.last_test is not None:
        t = a.last_test
        msg.last_connection_test.CopyFrom(
            pb.ConnectionTestSummary(
                time=timestamp(t.time_us),
                success=t.success,
                error_code=_error_code_by_name(t.error_code),
                message=t.message,
            )
        )
    return msg


def audit_event_to_pb(e: AuditRecord) -> pb.AuditEvent:
    return pb.AuditEvent(
        id=e.id,
        time=timestamp(e.time_us),
        tenant_id=e.tenant_id,
        user_id=e.user_id,
        account_id=e.account_id,
        action=_AUDIT_ACTIONS.get(e.action, pb.AUDIT_ACTION_UNSPECIFIED),
        changed_fields=e.changed_fields,
        outcome=_AUDIT_OUTCOMES.get(e.outcome, pb.AUDIT_OUTCOME_UNSPECIFIED),
        actor=pb.Actor(identity=e.actor_identity, subject=e.actor_subject),
    )


def present_fields(msg: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The proto3 `optional` fields of `msg` that the caller set, by name."""
    return {name: getattr(msg, name) for name in names if msg.HasField(name)}


def test_outcome_to_pb(outcome: ConnectionTestOutcome) -> pb.TestConnectionResponse:
    result, account = outcome.result, outcome.account
    return pb.TestConnectionResponse(
        success=result.success,
        protocol=PROTOCOL_TO_PB[account.protocol],
        server=f"{account.hostname}:{account.port}",
        message=result.message,
        folders=len(result.folders),
        folder_details=[
            pb.FolderDetail(
                name=f.name,
                display_name=f.display_name,
                type=_FOLDER_KINDS[f.kind],
                is_selectable=f.selectable,
            )
            for f in result.folders
        ],
        timestamp=timestamp(outcome.time_us),
        error_code=_ERROR_CODES[result.error_code]
        if result.error_code
        else pb.CONNECTION_ERROR_CODE_UNSPECIFIED,
        message_count=result.message_count,
        mailbox_size_bytes=result.mailbox_size_bytes,
        folders_truncated=result.folders_truncated,
        folders_total=result.folders_total,  # None leaves the optional field unset
    )
