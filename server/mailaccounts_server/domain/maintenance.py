"""Background upkeep: purging soft-deleted accounts past retention and re-sealing credentials
after a key rotation. Both work in small batches so they never hold long locks."""

from __future__ import annotations

import logging

from mailaccounts_server.domain.ports import Storage, Transactions
from mailaccounts_server.domain.vault import CredentialVault

_LOG = logging.getLogger(__name__)
BATCH = 500
IDEMPOTENCY_RETENTION_US = 48 * 3600 * 1_000_000  # promised: at least 24 hours


class Maintenance:
    """Purge and key rotation over the same ports as the account use cases."""

    def __init__(
        self, transactions: Transactions, storage: Storage, vault: CredentialVault
    ) -> None:
        self._tx = transactions
        self._storage = storage
        self._vault = vault

    async def purge_expired(
        self, *, now_us: int, retention_us: int, max_batches: int | None = None
    ) -> int:
        """Removes accounts deleted more than `retention_us` ago, then every credential they
        used that no live or still-restorable account refers to. Returns how many accounts
        were removed. `max_batches` bounds one call (the background purge runs a batch at a
        time)."""
        accounts = self._storage.accounts
        deleted_before = now_us - retention_us
        removed = batches = 0
        while max_batches is None or batches < max_batches:
            batches += 1
            async with self._tx.write() as tx:
                rows = await accounts.expired(tx, deleted_before, BATCH)
                if not rows:
                    break
                await accounts.delete_expired(tx, [a for a, _ in rows], deleted_before)
                await self._vault.drop_if_unused(
                    tx, [c for _, c in rows], restorable_after_us=deleted_before
                )
                removed += len(rows)
        async with self._tx.write() as tx:
            forgotten = await self._storage.keys.delete_before(
                tx, now_us - IDEMPOTENCY_RETENTION_US
            )
        if removed or forgotten:
            _LOG.info("purged %d accounts and %d idempotency keys", removed, forgotten)
        return removed

    async def reseal_credentials(self, *, now_us: int) -> tuple[int, int]:
        """Re-seals every credential not sealed with the primary key (and binds those from
        before host binding to their account's host). Safe while serving and to re-run after
        an interruption. Returns (re-sealed, unreadable): one no configured key opens is
        skipped and logged, not allowed to stop the run."""
        count = unreadable = 0
        after = ""
        while True:
            async with self._tx.write() as tx:
                batch = await self._storage.credentials.page(tx, after, BATCH)
                if not batch:
                    return count, unreadable
                for credential in batch:
                    outcome = await self._vault.reseal(tx, credential, now_us)
                    count += outcome is True
                    unreadable += outcome is None
                after = batch[-1].id
