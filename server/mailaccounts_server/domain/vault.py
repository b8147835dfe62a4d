"""The credential vault: sealing passwords to their owner, row and host, opening them only for
that host, and dropping them when no account uses them any more. The one place that knows the
associated data; used by the account use cases and by maintenance alike."""

from __future__ import annotations

import logging
import uuid

from mailaccounts_server.credentials import CredentialDecryptError
from mailaccounts_server.domain.errors import FailedPreconditionError, FieldViolation, invalid
from mailaccounts_server.domain.model import Account, Owner, normalize_host
from mailaccounts_server.domain.ports import (
    AccountRepository,
    CredentialRepository,
    SecretBox,
    StoredCredential,
    Tx,
)

_LOG = logging.getLogger(__name__)


def credential_aad(tenant_id: str, user_id: str, credential_id: str, host: str | None) -> str:
    """Associated data of a credential's ciphertext: it only decrypts on its own row and for
    the host it was entered for (None: a credential sealed before host binding)."""
    base = f"{tenant_id}/{user_id}/{credential_id}"
    return base if host is None else f"{base}@{host}"


def password_required_error() -> FailedPreconditionError:
    """The stored password was entered for another host: it is not sent to this one."""
    return FailedPreconditionError(
        "the account's hostname changed since its password was stored: enter the password "
        "again for the new server (UpdateAccount with password)",
        violations=[FieldViolation("password", "enter the password again for the new server")],
        reason="PASSWORD_REQUIRED",
    )


class CredentialVault:
    """Encrypts, stores, checks and decrypts credentials."""

    def __init__(
        self,
        secrets: SecretBox,
        credentials: CredentialRepository,
        accounts: AccountRepository,
    ) -> None:
        self._secrets = secrets
        self._credentials = credentials
        self._accounts = accounts

    def seal(self, owner: Owner, password: str, host: str) -> StoredCredential:
        """A new credential holding `password`, sealed for `host` (not stored yet)."""
        assert owner.user_id is not None
        credential_id = str(uuid.uuid4())
        aad = credential_aad(owner.tenant_id, owner.user_id, credential_id, host)
        return StoredCredential(
            id=credential_id,
            tenant_id=owner.tenant_id,
            user_id=owner.user_id,
            ciphertext=self._secrets.encrypt(password, aad=aad),
            host=host,
        )

    async def store(self, tx: Tx, owner: Owner, password: str, host: str, now_us: int) -> str:
        """Seals a new password for `host` and stores it; returns the credential's id."""
        sealed = self.seal(owner, password, host)
        await self._credentials.insert(tx, sealed, now_us)
        return sealed.id

    async def take_into_use(self, tx: Tx, owner: Owner, credential_id: str) -> str | None:
        """Checks that `credential_id` is the owner's (locking it against deletion until the
        transaction ends); returns the host it is bound to."""
        found = await self._credentials.get(tx, credential_id, lock="share")
        if found is None or (found.tenant_id, found.user_id) != (owner.tenant_id, owner.user_id):
            # One message for unknown and foreign ids: nothing leaks about other tenants.
            raise invalid("credentialId", "credentialId does not name one of your credentials")
        return found.host

    async def password_for(self, tx: Tx, owner: Owner, account: Account) -> str:
        """Decrypts an account's stored password, only for the host it was entered for: the
        account's present hostname is sealed into the associated data, so a hostname changed
        behind the service's back (even in the database) cannot decrypt it."""
        if account.password_required:
            raise password_required_error()
        found = await self._credentials.get(tx, account.credential_id)
        if found is None or (found.tenant_id, found.user_id) != (owner.tenant_id, owner.user_id):
            raise invalid("password", "the account has no stored credential; give a password")
        host = normalize_host(account.hostname)
        if found.host is not None and found.host != host:
            raise password_required_error()
        aad = credential_aad(
            found.tenant_id, found.user_id, found.id, None if found.host is None else host
        )
        try:
            return self._secrets.decrypt(found.ciphertext, aad=aad)
        except CredentialDecryptError as exc:
            # A configuration problem (e.g. a retired key), not a server fault: say so cleanly.
            _LOG.warning("stored credential of account %s cannot be decrypted: %s", account.id, exc)
            raise FailedPreconditionError(
                "the stored credential cannot be decrypted with this server's credential keys; "
                "give a password in the request or set a new one with UpdateAccount"
            ) from None

    async def drop_if_unused(
        self, tx: Tx, credential_ids: list[str], *, restorable_after_us: int
    ) -> None:
        """Deletes each credential that no live or still-restorable account uses. The row lock
        keeps an account from taking it into use in between (see take_into_use)."""
        for credential_id in sorted(set(credential_ids)):
            if await self._credentials.get(tx, credential_id, lock="update") is None:
                continue
            if not await self._accounts.credential_in_use(
                tx, credential_id, restorable_after_us=restorable_after_us
            ):
                await self._credentials.delete(tx, credential_id)

    async def reseal(self, tx: Tx, credential: StoredCredential, now_us: int) -> bool | None:
        """Re-seals one credential with the primary key and, if it predates host binding, binds
        it to the host its account uses. True when re-sealed, False when already current, None
        when no configured key opens it."""
        bind_to = credential.host or await self._accounts.credential_host_of(tx, credential.id)
        if self._secrets.is_current(credential.ciphertext) and credential.host == bind_to:
            return False
        c = credential
        try:
            plaintext = self._secrets.decrypt(
                c.ciphertext, aad=credential_aad(c.tenant_id, c.user_id, c.id, c.host)
            )
        except CredentialDecryptError:
            _LOG.warning("credential %s: no configured key decrypts it; skipped", c.id)
            return None
        aad = credential_aad(c.tenant_id, c.user_id, c.id, bind_to)
        await self._credentials.set_ciphertext(
            tx, c.id, self._secrets.encrypt(plaintext, aad=aad), bind_to, now_us
        )
        return True
