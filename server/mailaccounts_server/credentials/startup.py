"""Start-up: where the default key file lives, and whether the keys open the stored credentials."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import column, create_engine, func, inspect, select, table
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from mailaccounts_server.credentials.crypto import (
    KEYS_ENV_VAR,
    TOKEN_KEY_ID_PREFIX,
    ConfigurationError,
    CredentialCipher,
    CredentialDecryptError,
    token_key_id,
)

_LOG = logging.getLogger(__name__)

DEFAULT_KEY_FILE_NAME = "mailaccounts.key"
# Credentials whose key ids the start-up check reads: one small query whatever the table's size.
SAMPLE_ROWS = 1000


def _sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite URL (absolute); None for an in-memory database."""
    database = url.database or ""
    if str(url.query.get("uri", "")).lower() in ("true", "1"):
        # sqlite:///file:NAME?mode=...&uri=true (SQLAlchemy has moved the query out already).
        database = database.removeprefix("file:")
        if str(url.query.get("mode", "")) == "memory":
            return None
    if database in ("", ":memory:"):
        return None
    return Path(database).absolute()


def default_key_file(database_url: str) -> Path | None:
    """`mailaccounts.key` beside a SQLite database file; None for other databases."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return None
    found = _sqlite_file(url)
    return found.parent / DEFAULT_KEY_FILE_NAME if found is not None else None


def resolve_key_file(
    database_url: str, configured: Path | None, *, production: bool, keys_spec: str | None
) -> Path | None:
    """The key file to use: the configured one; in production no other (a key must be
    provisioned); else the one beside the SQLite database, so that it goes wherever the
    database goes whatever the working directory; else (PostgreSQL) the working directory's."""
    if configured is not None or production:
        return configured
    beside = default_key_file(database_url)
    if beside is not None:
        return beside
    fallback = Path(DEFAULT_KEY_FILE_NAME).absolute()
    if not (keys_spec or "").strip():
        # No database file to keep the key beside: a start from another directory would use
        # another key, which the stored-credentials check then refuses.
        _LOG.warning(
            "no SQLite database file to keep the credential key beside: using %s in the "
            "working directory; configure an absolute --key-file or %s",
            fallback,
            KEYS_ENV_VAR,
        )
    return fallback


def stored_key_ids(database_url: str, *, sample: int = SAMPLE_ROWS) -> list[str]:
    """Ids of the keys that sealed (up to `sample` of) the stored credentials, sorted; empty
    when there are none, the table does not exist yet, or the SQLite file does not."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        found = _sqlite_file(url)
        if found is None or not found.exists():
            return []
    # NullPool: one connection, closed at once; the server's own pool is opened elsewhere.
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("credentials"):
                return []
            # Only the token prefix that names the key: a short read of a bounded row count.
            prefixes = conn.execute(
                select(func.substr(column("ciphertext"), 1, TOKEN_KEY_ID_PREFIX))
                .select_from(table("credentials"))
                .limit(sample)
            ).scalars()
            ids: set[str] = set()
            for prefix in prefixes:
                try:
                    ids.add(token_key_id(prefix))
                except CredentialDecryptError:
                    continue  # a damaged token is unreadable under any key: not a key question
    finally:
        engine.dispose()
    return sorted(ids)


def check_stored_keys(database_url: str, cipher: CredentialCipher) -> None:
    """Refuses a keyring that opens none of the stored credentials (ConfigurationError); warns
    when it opens only some. Run it after the migrations, on the database the server uses."""
    stored = stored_key_ids(database_url)
    if not stored:
        return
    configured = set(cipher.key_ids)
    unknown = [kid for kid in stored if kid not in configured]
    source = f" (from {cipher.source})" if cipher.source else ""
    if len(unknown) == len(stored):
        raise ConfigurationError(
            f"stored credentials are sealed with key ids [{', '.join(stored)}]; the configured "
            f"keys are [{', '.join(cipher.key_ids)}]{source}, and none of them can open them. "
            f"Configure the key that sealed them ({KEYS_ENV_VAR}, or --key-file with the key "
            "file that was in use): starting with these keys would leave every stored "
            "password undecryptable"
        )
    if unknown:
        _LOG.warning(
            "some stored credentials are sealed with key ids [%s], which are not configured "
            "(configured: [%s]%s): they cannot be decrypted; add those keys after the primary, "
            "then run rotate-keys",
            ", ".join(unknown),
            ", ".join(cipher.key_ids),
            source,
        )
