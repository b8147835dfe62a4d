"""Background upkeep: purging soft-deleted accounts past retention and re-encrypting
credentials after a key rotation. Both work in small batches so they never hold long locks."""

from __future__ import annotations

import logging

from mailaccounts_server.credentials import CredentialCipher, CredentialDecryptError
from mailaccounts_server.domain.accounts import credential_aad, drop_credentials_if_unused
from mailaccounts_server.storage import accounts as account_store
from mailaccounts_server.storage import credentials as credential_store
from mailaccounts_server.storage import idempotency as key_store
from mailaccounts_server.storage.database import Database

_LOG = logging.getLogger(__name__)
BATCH = 500
IDEMPOTENCY_RETENTION_US = 48 * 3600 * 1_000_000  # promised: at least 24 hours


def purge_expired(
    db: Database, *, now_us: int, retention_us: int, max_batches: int | None = None
) -> int:
    """Removes accounts deleted more than `retention_us` ago, then every credential they used
    that no live or still-restorable account refers to. Returns the number of accounts removed.

    `max_batches` bounds one call (the background purge runs a batch at a time, so it never
    holds a database thread for long)."""
    deleted_before = now_us - retention_us
    removed = 0
    batches = 0
    while max_batches is None or batches < max_batches:
        batches += 1
        with db.transaction() as s:
            rows = account_store.expired_deleted_accounts(s, deleted_before, BATCH)
            if not rows:
                break
            account_store.delete_expired(s, [account_id for account_id, _ in rows], deleted_before)
            drop_credentials_if_unused(
                s, [credential_id for _, credential_id in rows], restorable_after_us=deleted_before
            )
            removed += len(rows)
    with db.transaction() as s:
        forgotten = key_store.delete_keys_before(s, now_us - IDEMPOTENCY_RETENTION_US)
    if removed or forgotten:
        _LOG.info("purged %d accounts and %d idempotency keys", removed, forgotten)
    return removed


def reencrypt_credentials(
    db: Database, cipher: CredentialCipher, *, now_us: int
) -> tuple[int, int]:
    """Re-seals every credential not sealed with the primary key. Safe to run while serving and
    to re-run after an interruption. Returns (re-encrypted, unreadable): a credential sealed
    with a key no longer configured is skipped and logged, not allowed to stop the run."""
    count = unreadable = 0
    after = ""
    while True:
        with db.transaction() as s:
            rows = credential_store.credentials_page(s, after, BATCH)
            if not rows:
                return count, unreadable
            for credential_id, tenant_id, user_id, ciphertext, host in rows:
                # A credential from before host binding is bound to the host its account
                # uses now (what the 0004 migration recorded) while it is re-sealed.
                bind_to = host or account_store.credential_host_of(s, credential_id)
                if cipher.is_current(ciphertext) and host == bind_to:
                    continue
                try:
                    plaintext = cipher.decrypt(
                        ciphertext, aad=credential_aad(tenant_id, user_id, credential_id, host)
                    )
                except CredentialDecryptError:
                    unreadable += 1
                    _LOG.warning("credential %s cannot be decrypted with the configured keys; "
                                 "skipped", credential_id)  # fmt: skip
                    continue
                aad = credential_aad(tenant_id, user_id, credential_id, bind_to)
                token = cipher.encrypt(plaintext, aad=aad)
                credential_store.set_ciphertext(s, credential_id, token, bind_to, now_us)
                count += 1
            after = rows[-1][0]
