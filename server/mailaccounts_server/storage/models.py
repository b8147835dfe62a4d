"""SQLAlchemy table models. Times are integer microseconds since the Unix epoch (UTC)."""

from __future__ import annotations

from typing import Optional

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of every table; Alembic reads its metadata."""


class AccountRow(Base):
    """An email account. Every row carries its owner; every query filters by it."""

    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[str] = mapped_column(String(128))
    account_name: Mapped[str] = mapped_column(String(255))
    # Lower-cased in Python (SQL lower() folds only ASCII under SQLite and C-locale PostgreSQL):
    # ListAccounts' case-insensitive query matches against it.
    account_name_normalized: Mapped[str] = mapped_column(Text, server_default="")
    email_address: Mapped[str] = mapped_column(String(254))
    # Lower-cased address: the unique index that forbids two live accounts per mailbox uses it.
    # Text, not String(254): lower-casing can lengthen an address ('İ' becomes 'i' and a
    # combining dot), and a valid address must never overflow its own normalised form.
    email_normalized: Mapped[str] = mapped_column(Text)
    protocol: Mapped[str] = mapped_column(String(8))
    hostname: Mapped[str] = mapped_column(String(253))
    port: Mapped[int] = mapped_column(Integer)
    encryption: Mapped[str] = mapped_column(String(16))
    username: Mapped[str] = mapped_column(String(255))
    credential_id: Mapped[str] = mapped_column(String(255))
    is_sync_enabled: Mapped[bool] = mapped_column(Boolean)
    sync_interval: Mapped[int] = mapped_column(Integer)
    last_sync_at: Mapped[Optional[int]] = mapped_column(BigInteger)  # noqa: UP045
    is_syncing: Mapped[bool] = mapped_column(Boolean)
    is_enabled: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    # Bumped on every write; the etag is derived from it and updates compare-and-swap on it.
    version: Mapped[int] = mapped_column(Integer)
    deleted_at: Mapped[Optional[int]] = mapped_column(BigInteger)  # noqa: UP045
    last_test_at: Mapped[Optional[int]] = mapped_column(BigInteger)  # noqa: UP045
    last_test_success: Mapped[Optional[bool]] = mapped_column(Boolean)  # noqa: UP045
    last_test_error: Mapped[Optional[str]] = mapped_column(String(32))  # noqa: UP045
    last_test_message: Mapped[Optional[str]] = mapped_column(String(512))  # noqa: UP045
    # Normalised host the stored password was entered for; the password is never sent to
    # another host (the credential's associated data binds it too).
    credential_host: Mapped[Optional[str]] = mapped_column(String(253))  # noqa: UP045

    __table_args__ = (
        # Keyset pagination: owner, then newest first with the id as tie-breaker.
        Index("ix_accounts_owner_created", "tenant_id", "user_id", "created_at", "id"),
        Index(
            "uq_accounts_owner_live_email",
            "tenant_id",
            "user_id",
            "email_normalized",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
        # The purge job finds expired soft-deleted rows without a scan.
        Index("ix_accounts_deleted_at", "deleted_at"),
        # show_deleted counts an owner's restorable rows without walking the live ones.
        Index("ix_accounts_owner_deleted", "tenant_id", "user_id", "deleted_at"),
    )


class IdempotencyKeyRow(Base):
    """Remembers which account a CreateAccount request_id produced, so retries get it back."""

    __tablename__ = "idempotency_keys"

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # Hash of the request's content: the same key with other content is refused.
    request_hash: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[int] = mapped_column(BigInteger, index=True)


class CredentialRow(Base):
    """A stored mailbox secret, encrypted; the plaintext never reaches the database."""

    __tablename__ = "credentials"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[str] = mapped_column(String(128))
    ciphertext: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    # Normalised host the secret was entered for, also sealed into the ciphertext's associated
    # data; NULL for credentials stored before host binding (rotate-keys binds them).
    host: Mapped[Optional[str]] = mapped_column(String(253))  # noqa: UP045

    __table_args__ = (Index("ix_credentials_owner", "tenant_id", "user_id"),)


class AuditEventRow(Base):
    """One audited action, written in the same transaction as the change it records."""

    __tablename__ = "audit_events"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[str] = mapped_column(String(128))
    account_id: Mapped[str] = mapped_column(String(36))
    action: Mapped[str] = mapped_column(String(32))
    # Comma-separated proto JSON field names (never values).
    changed_fields: Mapped[str] = mapped_column(String(512))
    outcome: Mapped[str] = mapped_column(String(16))
    time: Mapped[int] = mapped_column(BigInteger)
    # The authenticated caller (certificate identity or token subject), not the claimed user.
    actor_identity: Mapped[str] = mapped_column(Text, server_default="")
    actor_subject: Mapped[str] = mapped_column(Text, server_default="")

    __table_args__ = (
        Index("ix_audit_owner_time", "tenant_id", "user_id", "time", "id"),
        # A tenant admin's view of every user's events.
        Index("ix_audit_tenant_time", "tenant_id", "time", "id"),
    )


class AccountCountRow(Base):
    """Live accounts per owner, kept in the same transaction as every create, delete and
    undelete, so an unfiltered ListAccounts reports total_size without counting rows."""

    __tablename__ = "account_counts"

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    live: Mapped[int] = mapped_column(BigInteger)
