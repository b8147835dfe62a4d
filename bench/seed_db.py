"""Fast seeding for the list-scaling workload: rows written through the server's storage layer.

100k accounts through CreateAccount would take minutes, so these go straight into the database
the server uses (after the server migrated it), in one transaction per call, as domain
`Account` objects mapped to rows by the storage adapter's account repository and inserted in
batches through `insert_many` (executemany), which also keeps the owner's counter. They share
one stored credential, whose ciphertext is a placeholder: the list path never decrypts it.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from mailaccounts_server.domain.enums import Encryption, Protocol
from mailaccounts_server.domain.model import Account, Owner
from mailaccounts_server.domain.ports import StoredCredential
from mailaccounts_server.storage import Limits, SqlAccounts, open_database
from mailaccounts_server.storage.credentials import SqlCredentials

from bench.workloads import Identity

_BATCH = 5000
_HOST = "imap.example.com"


def seed_accounts(database_url: str, who: Identity, count: int) -> float:
    """Inserts `count` live accounts for `who`; returns the seconds it took."""
    start = time.perf_counter()
    asyncio.run(_seed(database_url, who, count))
    return time.perf_counter() - start


async def _seed(database_url: str, who: Identity, count: int) -> None:
    db = await open_database(database_url, limits=Limits(pool_size=1))
    accounts = SqlAccounts()
    try:
        now_us = time.time_ns() // 1000
        credential_id = str(uuid.uuid4())
        owner = Owner(who.tenant_id, who.user_id)
        async with db.write() as tx:
            placeholder = StoredCredential(
                id=credential_id, tenant_id=who.tenant_id, user_id=who.user_id,
                ciphertext="bench-placeholder", host=_HOST,
            )  # fmt: skip
            await SqlCredentials().insert(tx, placeholder, now_us)
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
                        hostname=_HOST,
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
                        credential_host=_HOST,
                    )
                )
                if len(batch) >= _BATCH or i == count - 1:
                    await accounts.insert_many(tx, owner, batch)
                    batch = []
    finally:
        await db.close()
