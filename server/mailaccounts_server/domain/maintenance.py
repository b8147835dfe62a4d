"""Background upkeep: purging soft-deleted accounts past retention and re-encrypting
credentials after a key rotation. Both work in small batches so they never hold long locks."""

from __future__ import annotations

import logging

from mailaccounts_server.credentials import CredentialCipher
from mailaccounts_server.domain.accounts import credential_aad
from mailaccounts_server.storage import accounts as account_store
from mailaccounts_server.storage import credentials as credential_store
from mailaccounts_server.storage import idempotency as key_store
from mailaccounts_server.storage.database import Database

_LOG = logging.getLogger(__name__)
BATCH = 500
IDEMPOTENCY_RETENTION_US = 48 * 3600 * 1_000_000  # promised: at least 24 hours


def purge_expired(db: Database, *, now_us: int, retention_us: int) -> int:
    """Removes accounts deleted more than `retention_us` ago, then every credential they used
    that no live or still-restorable account refers to. Returns the number of accounts removed."""
    deleted_before = now_us - retention_us
    removed = 0
    while True:
        with db.transaction() as s:
            rows = account_store.expired_deleted_accounts(s, deleted_before, BATCH)
            if not rows:
                break
            account_store.delete_rows(s, [account_id for account_id, _ in rows])
            orphans = {
                credential_id
                for _, credential_id in rows
                if not account_store.credential_in_use(
                    s, credential_id, restorable_after_us=deleted_before
                )
            }
            if orphans:
                credential_store.delete_credentials(s, sorted(orphans))
            removed += len(rows)
    with db.transaction() as s:
        forgotten = key_store.delete_keys_before(s, now_us - IDEMPOTENCY_RETENTION_US)
    if removed or forgotten:
        _LOG.info("purged %d accounts and %d idempotency keys", removed, forgotten)
    return removed


def reencrypt_credentials(db: Database, cipher: CredentialCipher, *, now_us: int) -> int:
    """Re-seals every credential not sealed with the primary key. Safe to run while serving and
    to re-run after an interruption. Returns how many were re-encrypted."""
    count = 0
    after = ""
    while True:
        with db.transaction() as s:
            rows = credential_store.credentials_page(s, after, BATCH)
            if not rows:
                return count
            for credential_id, tenant_id, user_id, ciphertext in rows:
                if cipher.is_current(ciphertext):
                    continue
                aad = credential_aad(tenant_id, user_id, credential_id)
                token = cipher.reencrypt(ciphertext, aad=aad)
                credential_store.set_ciphertext(s, credential_id, token, now_us)
                count += 1
            after = rows[-1][0]
