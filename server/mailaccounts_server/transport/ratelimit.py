"""Per-replica rate limits: hand-written GCRA token buckets per tenant and class of call."""

# Why by hand: the maintained libraries do not fit. `limits` offers fixed, moving and sliding
# windows but no token bucket and no injectable clock; `aiolimiter` makes callers wait
# instead of refusing and keeps no per-key table; neither bounds the number of keys.
# A GCRA bucket (the "generic cell rate algorithm", equivalent to a refill-on-read token
# bucket) is one float per key, so it is written here.
#
# Everything runs on the event loop: no method awaits, so each check is atomic with respect
# to other calls and no lock is needed. Do not call this from other threads.
#
# The limits are per replica, like Envoy's local rate limit: N replicas admit N times the
# configured rate in total.

from __future__ import annotations

import enum
import math
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2, status_pb2


class CallClass(enum.Enum):
    """Which bucket of a tenant a call takes a token from."""

    READ = "read"
    WRITE = "write"
    TEST = "test"


# AccountService method name -> class of call; the guard looks calls up here.
CLASS_OF: Final[dict[str, CallClass]] = {
    "CreateAccount": CallClass.WRITE,
    "UpdateAccount": CallClass.WRITE,
    "DeleteAccount": CallClass.WRITE,
    "UndeleteAccount": CallClass.WRITE,
    "GetAccount": CallClass.READ,
    "ListAccounts": CallClass.READ,
    "ListAuditEvents": CallClass.READ,
    "TestConnection": CallClass.TEST,
}

_LIMIT_NAMES: Final[dict[CallClass, str]] = {
    CallClass.READ: "reads per tenant",
    CallClass.WRITE: "writes per tenant",
    CallClass.TEST: "connection tests per tenant",
}
PASSWORD_LIMIT_NAME: Final = "failed password overrides per account"
_HOUR: Final = 3600.0
# Float rounding must not refuse a caller who waited exactly the retry_after it was given.
_SLACK: Final = 1e-9


@dataclass(frozen=True)
class RateLimits:
    """Limits of one replica. A rate of 0 (or less) turns that limit off.

    The defaults are far above what a normal tenant does, so only runaway clients meet them.
    """

    reads_per_second: float = 200.0
    reads_burst: int = 400
    writes_per_second: float = 50.0
    writes_burst: int = 100
    tests_per_second: float = 2.0
    tests_burst: int = 20
    # Per account: TestConnection calls with a request password that failed with AUTH_FAILURE
    # within the last hour; a brute-force guard against guessing the mailbox password.
    failed_password_overrides_per_hour: int = 10

    def __post_init__(self) -> None:
        for cls in CallClass:
            rate, burst = self.bucket(cls)
            if math.isnan(rate) or math.isinf(rate):
                raise ValueError(f"{_LIMIT_NAMES[cls]}: rate must be a finite number")
            if rate > 0 and burst < 1:
                raise ValueError(f"{_LIMIT_NAMES[cls]}: burst must be at least 1")

    def bucket(self, call_class: CallClass) -> tuple[float, int]:
        """(tokens per second, burst) of a class of call."""
        if call_class is CallClass.READ:
            return self.reads_per_second, self.reads_burst
        if call_class is CallClass.WRITE:
            return self.writes_per_second, self.writes_burst
        return self.tests_per_second, self.tests_burst


@dataclass(frozen=True)
class Refusal:
    """Why a call was refused, and when the caller may retry."""

    limit_name: str  # e.g. "reads per tenant"; the key of refused()
    subject: str  # "tenant:<id>" or "account:<id>"; QuotaFailure.Violation.subject
    retry_after: float  # seconds until the call would be allowed
    description: str  # human text naming the limit and its configured rate


@dataclass
class _Overrides:
    """Recent password overrides of one account that failed, or are still running."""

    # Ascending clock times, at most the limit: older entries no longer decide anything.
    times: list[float] = field(default_factory=list)
    # How many of `times` are attempts still running (counted as failures until recorded).
    running: int = 0


class RateLimiter:
    """Token buckets per (tenant, class of call) and a failed-password log per account.

    Memory is bounded: at most `max_keys` tenant buckets and `max_keys` account logs. Full
    buckets and expired logs are forgotten first (they are the same as absent ones); beyond
    that the least recently used entry is dropped, which forgives its debt. That costs
    little: reaching it needs `max_keys` other busy keys on this replica.
    """

    def __init__(
        self,
        limits: RateLimits,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._limits = limits
        self._clock = clock
        self._max_keys = max_keys
        # (class, tenant) -> theoretical arrival time (TAT) of GCRA: the bucket is full when
        # TAT <= now, and each token taken pushes TAT one emission interval later.
        self._tats: OrderedDict[tuple[CallClass, str], float] = OrderedDict()
        self._overrides: OrderedDict[str, _Overrides] = OrderedDict()
        self._refused: Counter[str] = Counter()

    def __len__(self) -> int:
        """Tenant buckets and account logs held (at most 2 * max_keys)."""
        return len(self._tats) + len(self._overrides)

    def refused(self) -> Mapping[str, int]:
        """Refusals so far by limit name, for metrics (a copy)."""
        return dict(self._refused)

    def check(self, tenant_id: str, call_class: CallClass) -> Refusal | None:
        """Takes one token of the tenant's bucket for the class; a Refusal when it is empty."""
        rate, burst = self._limits.bucket(call_class)
        if rate <= 0:
            return None
        now = self._clock()
        interval = 1.0 / rate
        key = (call_class, tenant_id)
        tat = max(self._tats.get(key, now), now)
        new_tat = tat + interval
        # Allowed while the debt after taking this token fits in the burst.
        wait = new_tat - now - burst * interval
        if wait > _SLACK:
            name = _LIMIT_NAMES[call_class]
            self._refused[name] += 1
            return Refusal(
                limit_name=name,
                subject=f"tenant:{tenant_id}",
                retry_after=wait,
                description=f"rate limit of {name} exceeded ({rate:g} per second, "
                f"bursts of {burst}); retry in {wait:.3f} s",
            )
        self._tats[key] = new_tat
        self._tats.move_to_end(key)
        self._trim_buckets(now)
        return None

    def check_password_override(self, account_id: str) -> Refusal | None:
        """Call before a TestConnection with a request password: a Refusal when the account's
        failed overrides in the last hour reached the limit.

        An allowed attempt counts as a failure until `record_password_override` says how it
        went, so concurrent guesses cannot all pass while the count is just below the limit.
        If it is never recorded (the call died), it expires after the hour like a failure.
        """
        limit = self._limits.failed_password_overrides_per_hour
        if limit <= 0:
            return None
        now = self._clock()
        entry = self._overrides.get(account_id)
        if entry is None:
            entry = self._overrides[account_id] = _Overrides()
        else:
            self._overrides.move_to_end(account_id)
            _expire(entry, now)
        if len(entry.times) >= limit:
            wait = entry.times[-limit] + _HOUR - now
            self._refused[PASSWORD_LIMIT_NAME] += 1
            self._trim_overrides(now)
            return Refusal(
                limit_name=PASSWORD_LIMIT_NAME,
                subject=f"account:{account_id}",
                retry_after=wait,
                description=f"too many failed password overrides for this account "
                f"({limit} per hour); retry in {math.ceil(wait)} s",
            )
        entry.times.append(now)
        entry.running += 1
        self._trim_overrides(now)
        return None

    def record_password_override(self, account_id: str, *, failed: bool) -> None:
        """Call after each allowed override: `failed` when the login failed with AUTH_FAILURE.

        Any other outcome only releases the attempt and does not reset the count: a caller
        could otherwise clear it between guesses with a test that times out on purpose.
        """
        limit = self._limits.failed_password_overrides_per_hour
        if limit <= 0:
            return
        now = self._clock()
        entry = self._overrides.get(account_id)
        if entry is None:  # evicted meanwhile, or recorded without a check
            if not failed:
                return
            entry = self._overrides[account_id] = _Overrides()
        _expire(entry, now)
        if entry.running > 0:
            entry.running -= 1
            if failed:
                return  # the attempt already counts as a failure
            entry.times.pop()  # the newest entry stands for this attempt
        elif failed:
            entry.times.append(now)
            del entry.times[:-limit]
        if not entry.times:
            del self._overrides[account_id]
        self._trim_overrides(now)

    def _trim_buckets(self, now: float) -> None:
        # Full buckets at the old end are the same as absent ones; drop them for free. Each
        # key is dropped at most once per insertion, so this is amortised O(1).
        tats = self._tats
        while tats:
            key, tat = next(iter(tats.items()))
            if tat > now and len(tats) <= self._max_keys:
                break
            del tats[key]

    def _trim_overrides(self, now: float) -> None:
        overrides = self._overrides
        while overrides:
            key, entry = next(iter(overrides.items()))
            expired = not entry.times or entry.times[-1] + _HOUR <= now
            if not expired and len(overrides) <= self._max_keys:
                break
            del overrides[key]


def _expire(entry: _Overrides, now: float) -> None:
    """Drops the entries older than an hour; `running` never exceeds what is left."""
    cut = now - _HOUR
    drop = 0
    while drop < len(entry.times) and entry.times[drop] <= cut:
        drop += 1
    if drop:
        del entry.times[:drop]
    entry.running = min(entry.running, len(entry.times))


def to_rpc_status(refusal: Refusal) -> status_pb2.Status:
    """RESOURCE_EXHAUSTED with RetryInfo (when to retry) and QuotaFailure (which limit);
    pass it to grpc_status.rpc_status.to_status."""
    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=refusal.description)
    delay = Duration()
    # Rounded up: a client that retries exactly after the delay must not be refused again.
    delay.FromNanoseconds(max(0, math.ceil(refusal.retry_after * 1e9)))
    status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    status.details.add().Pack(
        error_details_pb2.QuotaFailure(
            violations=[
                error_details_pb2.QuotaFailure.Violation(
                    subject=refusal.subject, description=refusal.description
                )
            ]
        )
    )
    return status
