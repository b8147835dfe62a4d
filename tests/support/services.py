"""The rule for tests that need a system service (PostgreSQL, Dovecot) that may be missing."""

from __future__ import annotations

import os

import pytest

# CI sets this: there a missing service is a failure, never a silent skip.
REQUIRE_ENV = "MAILACCOUNTS_REQUIRE_SERVICES"


def require_service(available: bool, missing_message: str) -> None:
    """Skips the test (or, under MAILACCOUNTS_REQUIRE_SERVICES=1, fails it) when unavailable."""
    if available:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{missing_message}; {REQUIRE_ENV}=1 forbids skipping", pytrace=False)
    pytest.skip(missing_message)
