"""The account's fields as the contract names them: what UpdateAccount may set and the proto
JSON names audit records use, read from the proto descriptors instead of hand-kept lists.
(The fields themselves are defined once, by `model.Account`; storage maps them by name.)"""

from __future__ import annotations

from mailaccounts.v1 import account_service_pb2 as pb

_CREATE = pb.CreateAccountRequest.DESCRIPTOR
_UPDATE = pb.UpdateAccountRequest.DESCRIPTOR
# Request fields that are not account settings: the secret itself and the request's own ids.
_NOT_SETTINGS = {"password", "request_id", "id", "etag"}

PATCHABLE: tuple[str, ...] = tuple(
    f.name for f in _UPDATE.fields if f.has_presence and f.name not in _NOT_SETTINGS
)
"""Settings UpdateAccount may change (its proto3 `optional` fields, less the password)."""

CREATED: list[str] = [f.json_name for f in _CREATE.fields if f.name not in _NOT_SETTINGS]
"""JSON names of the settings a CreateAccount records in the audit log."""


def json_name(field: str) -> str:
    """The proto JSON name of an UpdateAccountRequest field ("account_name" -> "accountName")."""
    return _UPDATE.fields_by_name[field].json_name
