"""TestConnection: who may test what, with which password, how long, and how many at once.

Mail-server work blocks for up to the timeout, so it runs on its own thread pool: a hundred
hanging tests never take the database threads or the event loop that Get/List need.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from mailaccounts_server.concurrency import ThreadRunner
from mailaccounts_server.domain.accounts import AccountManager
from mailaccounts_server.domain.errors import (
    FieldViolation,
    ResourceExhaustedError,
    ValidationError,
)
from mailaccounts_server.domain.model import Account, Caller
from mailaccounts_server.mail import ProbeResult, ProbeTarget

_LOG = logging.getLogger(__name__)
TIMEOUT_MIN, TIMEOUT_MAX, TIMEOUT_DEFAULT = 1, 120, 30
# Time kept back from the caller's RPC deadline so the answer (and its audit record) still
# reaches them as a TIMEOUT result instead of DEADLINE_EXCEEDED.
_DEADLINE_MARGIN_S = 0.5


class Prober(Protocol):
    """The mail adapter's interface, as this module uses it."""

    def probe(self, target: ProbeTarget) -> ProbeResult: ...


@dataclass(frozen=True, slots=True)
class ConnectionTestOutcome:
    """A finished test and the account as it is after recording it."""

    account: Account
    result: ProbeResult
    time_us: int


def validate_test_request(password: str | None, timeout_seconds: int | None) -> int:
    """Checks the request's own fields; returns the timeout in seconds."""
    violations = []
    if password is not None and not password:
        violations.append(FieldViolation("password", "password must not be empty when given"))
    timeout = TIMEOUT_DEFAULT if timeout_seconds is None else timeout_seconds
    if not TIMEOUT_MIN <= timeout <= TIMEOUT_MAX:
        violations.append(
            FieldViolation(
                "timeoutSeconds",
                f"timeoutSeconds must be between {TIMEOUT_MIN} and {TIMEOUT_MAX}, got {timeout}",
            )
        )
    if violations:
        raise ValidationError(violations)
    return timeout


class ConnectionTestRunner:
    """Runs connection tests with a per-tenant cap and a global cap on this replica."""

    def __init__(
        self,
        accounts: AccountManager,
        prober: Prober,
        run_db: ThreadRunner,
        *,
        max_per_tenant: int,
        max_total: int,
    ) -> None:
        self._accounts = accounts
        self._prober = prober
        self._run_db = run_db
        self._max_per_tenant = max_per_tenant
        self._max_total = max_total
        self._in_flight: Counter[str] = Counter()
        # One thread per allowed test: a test never queues behind another one.
        self._run_probe = ThreadRunner(max_total, "probe")

    def shutdown(self) -> None:
        self._run_probe.shutdown(wait=False)

    @contextmanager
    def _slot(self, tenant_id: str) -> Iterator[None]:
        # Single-threaded (event loop) bookkeeping, so no lock is needed.
        if self._in_flight.total() >= self._max_total:
            raise ResourceExhaustedError("too many connection tests in progress; retry later")
        if self._in_flight[tenant_id] >= self._max_per_tenant:
            raise ResourceExhaustedError(
                f"at most {self._max_per_tenant} connection tests per tenant at once; retry later"
            )
        self._in_flight[tenant_id] += 1
        try:
            yield
        finally:
            self._in_flight[tenant_id] -= 1
            if not self._in_flight[tenant_id]:
                del self._in_flight[tenant_id]

    async def run(
        self,
        caller: Caller,
        account_id: str,
        *,
        password: str | None,
        timeout_seconds: int | None,
        rpc_time_remaining: float | None,
    ) -> ConnectionTestOutcome:
        timeout = float(validate_test_request(password, timeout_seconds))
        if rpc_time_remaining is not None:
            timeout = max(0.1, min(timeout, rpc_time_remaining - _DEADLINE_MARGIN_S))
        account = await self._run_db(self._accounts.get, caller, account_id)
        with self._slot(caller.tenant_id):
            if password is None:
                password = await self._run_db(self._accounts.password_for, caller, account)
            target = ProbeTarget(
                host=account.hostname,
                port=account.port,
                protocol=account.protocol,
                encryption=account.encryption,
                username=account.username,
                password=password,
                timeout=timeout,
            )
            result = await self._run_probe(self._prober.probe, target)
        recorded = await self._run_db(
            self._accounts.record_test,
            caller,
            account,
            success=result.success,
            error=result.error_code.name if result.error_code else None,
            message=result.message,
        )
        assert recorded.last_test is not None
        return ConnectionTestOutcome(recorded, result, recorded.last_test.time_us)
