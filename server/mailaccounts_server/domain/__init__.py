"""Domain layer: the account rules and use cases, free of gRPC and SQL. It reaches storage,
encryption and mail servers only through the Protocols in `ports`. (Connection tests live in
`domain.connection_tests`, not re-exported here: the mail adapter imports the domain's enums.)"""

from mailaccounts_server.domain.accounts import AccountManager, Deletion, Page
from mailaccounts_server.domain.idempotency import RequestHasher
from mailaccounts_server.domain.maintenance import Maintenance
from mailaccounts_server.domain.model import Account, Caller, Owner
from mailaccounts_server.domain.pagination import PageTokenCodec
from mailaccounts_server.domain.ports import Storage, Transactions
from mailaccounts_server.domain.vault import CredentialVault

__all__ = [
    "Account",
    "AccountManager",
    "Caller",
    "CredentialVault",
    "Deletion",
    "Maintenance",
    "Owner",
    "Page",
    "PageTokenCodec",
    "RequestHasher",
    "Storage",
    "Transactions",
]
