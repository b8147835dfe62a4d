"""Fast seeding for the list-scaling workload: rows written through the server's storage layer.

100k accounts through CreateAccount would take minutes, so these go straight into the database
the server uses (after the server migrated it), in one transaction per call, as domain
`Account` objects mapped to rows by `mailaccounts_server.storage.accounts` and inserted in
batches through `insert_accounts` (executemany), which also keeps the owner's counter.
They share one stored credential, whose ciphertext is a placeholder: the list path never
decrypts it.
"""

from __future__ import annotations

import time
import uuid

from mailaccounts_server.domain.enums import Encryption, Protocol
from mailaccounts_server.domain.model import Account, Caller
from mailaccounts_server.storage import accounts as account_store
from mailaccounts_server.storage import credentials as credential_store
from mailaccounts_server.storage.database import Database

from bench.workloads import Identity

_BATCH = 5000


def seed_accounts(database_url: str, who: Identity, count: int) -> float:
    """Inserts `count` live accounts for `who`; returns the seconds it took."""
    start = time.perf_counter()
    db = Database(database_url, pool_size=1)
    try:
        now_us = time.time_ns() // 1000
        credential_id = str(uuid.uuid4())
        owner = Caller(tenant_id=who.tenant_id, user_id=who.user_id)
        with db.transaction() as tx:
            credential_store.insert_credential(
                tx, credential_id=credential_id, tenant_id=who.tenant_id,
                user_id=who.user_id, ciphertext="bench-placeholder", host="imap.example.com",
                now_us=now_us,
            )  # fmt: skip
            batch: list[Account] = []
            for i in range(count):
                created = now_us - (count - i) * 1000  # distinct, older than "now"
                address = f"list{i}@{who.user_id}.example.com"
                batch.append(
                    Account(
                        id=str(uuid.uuid4()),
                        tenant_id=who.tenant_id,
                        user_id=who.user_id,
                        account_name=f"List {i}",
                        email_address=address,
                        protocol=Protocol.IMAP,
                        hostname="imap.example.com",
                        port=993,
                        encryption=Encryption.TLS,
                        username=address,
                        credential_id=credential_id,
                        is_sync_enabled=True,
                        sync_interval=300,
                        last_sync_at_us=None,
                        is_syncing=False,
                        is_enabled=True,
                        created_at_us=created,
                        updated_at_us=created,
                        version=1,
                        credential_host="imap.example.com",
                    )
                )
                if len(batch) >= _BATCH or i == count - 1:
                    account_store.insert_accounts(tx, owner, batch)
                    batch = []
    finally:
        db.dispose()
    return time.perf_counter() - start
