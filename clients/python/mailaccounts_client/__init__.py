"""Typed Python client of mailaccounts.v1.AccountService."""

from mailaccounts_client.client import AccountClient, Credentials

__all__ = ["AccountClient", "Credentials"]
