"""TestConnection: who may test what, with which password, how long, and how many at once.

Mail-server work blocks for up to the timeout, so it runs on the execution policy's probe
threads: a hundred hanging tests never take the event loop that Get/List need.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

from mailaccounts_server.domain.accounts import AccountManager
from mailaccounts_server.domain.errors import (
    FieldViolation,
    ResourceExhaustedError,
    ValidationError,
)
from mailaccounts_server.domain.model import Account, Caller
from mailaccounts_server.domain.ports import Transactions
from mailaccounts_server.domain.validation import MAX_PASSWORD
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
    elif password is not None and (len(password) > MAX_PASSWORD or "\x00" in password):
        violations.append(
            FieldViolation(
                "password", f"password must be at most {MAX_PASSWORD} characters, without NUL"
            )
        )
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
    """Runs connection tests with a per-tenant cap and a global cap on this replica.

    A test holds its slot until its probe has finished and its outcome is recorded, even when
    the caller cancels or its deadline passes: the probe thread keeps working until its own
    timeout, so freeing the slot earlier would let cancelled calls pile up threads.
    """

    def __init__(
        self,
        accounts: AccountManager,
        prober: Prober,
        execution: Transactions,
        *,
        max_per_tenant: int,
        max_total: int,
    ) -> None:
        self._accounts = accounts
        self._prober = prober
        self._execution = execution
        self._max_per_tenant = max_per_tenant
        self._max_total = max_total
        self._in_flight: Counter[str] = Counter()
        self._jobs: set[asyncio.Task[ConnectionTestOutcome]] = set()

    def shutdown(self) -> None:
        """Cuts probes still in progress: they answer at once (and are still recorded)."""
        abort = getattr(self._prober, "abort_all", None)
        if abort is not None:
            abort()

    async def wait_recorded(self, timeout: float) -> None:
        """Waits (up to `timeout`) until every test in progress has stored its result and audit
        record, cut ones included."""
        if self._jobs:
            await asyncio.wait(list(self._jobs), timeout=timeout)

    def _take_slot(self, tenant_id: str) -> None:
        # Event-loop-only bookkeeping, so no lock is needed.
        if self._in_flight.total() >= self._max_total:
            raise ResourceExhaustedError("too many connection tests in progress; retry later")
        if self._in_flight[tenant_id] >= self._max_per_tenant:
            raise ResourceExhaustedError(
                f"at most {self._max_per_tenant} connection tests per tenant at once; retry later"
            )
        self._in_flight[tenant_id] += 1

    def _release_slot(self, tenant_id: str) -> None:
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
        limit = float(validate_test_request(password, timeout_seconds))
        loop = asyncio.get_running_loop()
        # Absolute: time spent reading the account and its credential counts against it.
        deadline = loop.time() + limit
        if rpc_time_remaining is not None:
            deadline = min(deadline, loop.time() + rpc_time_remaining - _DEADLINE_MARGIN_S)
        account = await self._accounts.get_own(caller, account_id)
        self._take_slot(caller.tenant_id)
        job = asyncio.ensure_future(self._probe_and_record(caller, account, password, deadline))
        self._jobs.add(job)
        job.add_done_callback(self._forget)
        # Shielded: a caller that goes away does not stop the probe from being recorded.
        return await asyncio.shield(job)

    def _forget(self, job: asyncio.Task[ConnectionTestOutcome]) -> None:
        self._jobs.discard(job)
        # Retrieve the outcome even when the caller left, so asyncio does not warn about it.
        if not job.cancelled() and job.exception() is not None:
            _LOG.debug("connection test ended with %r", type(job.exception()).__name__)

    async def _probe_and_record(
        self, caller: Caller, account: Account, password: str | None, deadline: float
    ) -> ConnectionTestOutcome:
        try:
            if password is None:
                password = await self._accounts.password_for(caller, account)
            timeout = max(0.1, deadline - asyncio.get_running_loop().time())
            target = ProbeTarget(
                host=account.hostname,
                port=account.port,
                protocol=account.protocol,
                encryption=account.encryption,
                username=account.username,
                password=password,
                timeout=timeout,
            )
            result = await self._execution.probe(self._prober.probe, target)
            recorded = await self._accounts.record_test(
                caller,
                account,
                success=result.success,
                error=result.error_code.name if result.error_code else None,
                message=result.message,
            )
        finally:
            self._release_slot(caller.tenant_id)
        assert recorded.last_test is not None
        return ConnectionTestOutcome(recorded, result, recorded.last_test.time_us)
