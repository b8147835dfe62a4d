"""RateLimiter called directly with a fake clock: buckets, the password guard, bounded memory."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status
from mailaccounts_server.transport.ratelimit import (
    CLASS_OF,
    PASSWORD_LIMIT_NAME,
    CallClass,
    RateLimiter,
    RateLimits,
    Refusal,
    to_rpc_status,
)

HOUR = 3600.0


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def limiter(clock: FakeClock, max_keys: int = 100_000, **limits: Any) -> RateLimiter:
    return RateLimiter(RateLimits(**limits), clock=clock, max_keys=max_keys)


def take(rl: RateLimiter, n: int, tenant: str = "t1", cls: CallClass = CallClass.READ) -> int:
    """How many of n calls at the current instant are allowed."""
    return sum(rl.check(tenant, cls) is None for _ in range(n))


def fail_overrides(rl: RateLimiter, account: str, n: int) -> None:
    for _ in range(n):
        assert rl.check_password_override(account) is None
        rl.record_password_override(account, failed=True)


def test_burst_is_allowed_then_refused() -> None:
    clock = FakeClock()
    rl = limiter(clock, reads_per_second=10.0, reads_burst=5)
    assert take(rl, 5) == 5
    refusal = rl.check("t1", CallClass.READ)
    assert refusal is not None
    assert refusal.limit_name == "reads per tenant"
    assert refusal.subject == "tenant:t1"
    assert "10 per second" in refusal.description and "bursts of 5" in refusal.description
    assert rl.refused() == {"reads per tenant": 1}


def test_default_limits_are_far_above_normal_use() -> None:
    rl = RateLimiter(RateLimits(), clock=FakeClock())
    assert take(rl, 400, cls=CallClass.READ) == 400
    assert take(rl, 100, cls=CallClass.WRITE) == 100
    assert take(rl, 20, cls=CallClass.TEST) == 20
    assert rl.check("t1", CallClass.TEST) is not None


def test_tokens_refill_over_time() -> None:
    clock = FakeClock()
    rl = limiter(clock, writes_per_second=4.0, writes_burst=4)
    assert take(rl, 10, cls=CallClass.WRITE) == 4
    clock.advance(0.5)  # two tokens back
    assert take(rl, 10, cls=CallClass.WRITE) == 2
    clock.advance(100.0)  # refill stops at the burst
    assert take(rl, 10, cls=CallClass.WRITE) == 4


def test_steady_rate_below_the_limit_is_never_refused() -> None:
    clock = FakeClock()
    rl = limiter(clock, reads_per_second=10.0, reads_burst=1)
    for _ in range(1000):
        assert rl.check("t1", CallClass.READ) is None
        clock.advance(0.1)


def test_retry_after_is_the_wait_until_one_token() -> None:
    clock = FakeClock()
    rl = limiter(clock, tests_per_second=2.0, tests_burst=3)
    assert take(rl, 3, cls=CallClass.TEST) == 3
    clock.advance(0.2)
    refusal = rl.check("t1", CallClass.TEST)
    assert refusal is not None
    assert refusal.retry_after == pytest.approx(0.3)
    clock.advance(refusal.retry_after - 0.001)
    assert rl.check("t1", CallClass.TEST) is not None
    clock.advance(0.001)
    assert rl.check("t1", CallClass.TEST) is None
    assert rl.check("t1", CallClass.TEST) is not None


def test_refused_calls_take_no_token() -> None:
    clock = FakeClock()
    rl = limiter(clock, writes_per_second=1.0, writes_burst=1)
    assert take(rl, 1, cls=CallClass.WRITE) == 1
    assert take(rl, 50, cls=CallClass.WRITE) == 0
    clock.advance(1.0)
    assert take(rl, 1, cls=CallClass.WRITE) == 1
    assert rl.refused() == {"writes per tenant": 50}


def test_tenants_and_classes_are_independent() -> None:
    clock = FakeClock()
    rl = limiter(
        clock,
        reads_per_second=1.0,
        reads_burst=2,
        writes_per_second=1.0,
        writes_burst=3,
        tests_per_second=1.0,
        tests_burst=1,
    )
    assert take(rl, 10, "t1", CallClass.READ) == 2
    assert take(rl, 10, "t1", CallClass.WRITE) == 3
    assert take(rl, 10, "t1", CallClass.TEST) == 1
    assert take(rl, 10, "t2", CallClass.READ) == 2
    assert take(rl, 10, "t2", CallClass.TEST) == 1
    refused = rl.refused()
    assert refused["reads per tenant"] == 16
    assert refused["writes per tenant"] == 7
    assert refused["connection tests per tenant"] == 18


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_non_positive_rate_means_unlimited(rate: float) -> None:
    clock = FakeClock()
    rl = limiter(clock, reads_per_second=rate, reads_burst=0, failed_password_overrides_per_hour=0)
    assert take(rl, 10_000) == 10_000
    fail_overrides(rl, "a1", 100)
    assert len(rl) == 0  # nothing is tracked for a disabled limit
    assert rl.refused() == {}


def test_invalid_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="burst"):
        RateLimits(writes_per_second=1.0, writes_burst=0)
    with pytest.raises(ValueError, match="finite"):
        RateLimits(reads_per_second=float("inf"))
    with pytest.raises(ValueError, match="max_keys"):
        RateLimiter(RateLimits(), max_keys=0)


def test_password_guard_counts_only_failures() -> None:
    clock = FakeClock()
    rl = limiter(clock, failed_password_overrides_per_hour=3)
    for _ in range(20):
        assert rl.check_password_override("a1") is None
        rl.record_password_override("a1", failed=False)
    fail_overrides(rl, "a1", 3)
    refusal = rl.check_password_override("a1")
    assert refusal is not None
    assert refusal.limit_name == PASSWORD_LIMIT_NAME
    assert refusal.subject == "account:a1"
    assert "3 per hour" in refusal.description
    assert rl.refused() == {PASSWORD_LIMIT_NAME: 1}


def test_password_guard_is_per_account() -> None:
    clock = FakeClock()
    rl = limiter(clock, failed_password_overrides_per_hour=2)
    fail_overrides(rl, "a1", 2)
    assert rl.check_password_override("a1") is not None
    assert rl.check_password_override("a2") is None


def test_password_failures_expire_after_an_hour() -> None:
    clock = FakeClock()
    rl = limiter(clock, failed_password_overrides_per_hour=3)
    fail_overrides(rl, "a1", 1)
    clock.advance(600.0)
    fail_overrides(rl, "a1", 2)
    refusal = rl.check_password_override("a1")
    assert refusal is not None
    assert refusal.retry_after == pytest.approx(HOUR - 600.0)  # until the first failure ages out
    clock.advance(refusal.retry_after)
    assert rl.check_password_override("a1") is None  # one slot back, not all three
    rl.record_password_override("a1", failed=True)
    assert rl.check_password_override("a1") is not None
    clock.advance(HOUR)
    fail_overrides(rl, "a1", 3)  # everything aged out
    assert len(rl) == 1


def test_other_outcomes_do_not_reset_the_count() -> None:
    # A test that fails for another reason (say a timeout asked for on purpose) must not
    # clear the failures between guesses.
    clock = FakeClock()
    rl = limiter(clock, failed_password_overrides_per_hour=3)
    fail_overrides(rl, "a1", 2)
    assert rl.check_password_override("a1") is None
    rl.record_password_override("a1", failed=False)
    fail_overrides(rl, "a1", 1)
    assert rl.check_password_override("a1") is not None


def test_running_overrides_count_until_recorded() -> None:
    # Concurrent guesses: each allowed check holds a slot, so no more than the limit run.
    clock = FakeClock()
    rl = limiter(clock, failed_password_overrides_per_hour=3)
    allowed = sum(rl.check_password_override("a1") is None for _ in range(10))
    assert allowed == 3
    rl.record_password_override("a1", failed=False)  # one succeeded or errored: slot freed
    assert rl.check_password_override("a1") is None
    for _ in range(3):
        rl.record_password_override("a1", failed=True)
    assert rl.check_password_override("a1") is not None
    # An attempt never recorded (the call died) expires like a failure.
    clock.advance(HOUR)
    assert rl.check_password_override("a1") is None
    clock.advance(HOUR)
    assert rl.check_password_override("a1") is None


def test_memory_is_bounded_by_max_keys() -> None:
    clock = FakeClock()
    rl = limiter(clock, max_keys=100, reads_per_second=1.0, reads_burst=5)
    for i in range(1000):
        assert rl.check(f"t{i}", CallClass.READ) is None
        fail_overrides(rl, f"a{i}", 1)
    assert len(rl) <= 200  # 100 buckets and 100 account logs
    # The most recent keys are kept, with their state.
    assert take(rl, 10, "t999") == 4
    fail_overrides(rl, "a999", 9)
    assert rl.check_password_override("a999") is not None


def test_full_buckets_and_expired_logs_are_forgotten() -> None:
    clock = FakeClock()
    rl = limiter(clock, reads_per_second=10.0, reads_burst=10)
    for i in range(50):
        rl.check(f"t{i}", CallClass.READ)
        fail_overrides(rl, f"a{i}", 1)
    assert len(rl) == 100
    clock.advance(HOUR + 1)
    rl.check("t-new", CallClass.READ)
    fail_overrides(rl, "a-new", 1)
    assert len(rl) == 2


def test_class_of_covers_every_method() -> None:
    from mailaccounts.v1 import account_service_pb2 as pb

    methods = {m.name for m in pb.DESCRIPTOR.services_by_name["AccountService"].methods}
    assert set(CLASS_OF) == methods
    assert CLASS_OF["TestConnection"] is CallClass.TEST
    assert CLASS_OF["ListAuditEvents"] is CallClass.READ
    assert CLASS_OF["UndeleteAccount"] is CallClass.WRITE


def test_to_rpc_status_has_retry_info_and_quota_failure() -> None:
    refusal = Refusal(
        limit_name="writes per tenant",
        subject="tenant:t1",
        retry_after=1.25,
        description="rate limit of writes per tenant exceeded",
    )
    status = to_rpc_status(refusal)
    assert status.code == code_pb2.RESOURCE_EXHAUSTED
    assert status.message == refusal.description
    retry = error_details_pb2.RetryInfo()
    quota = error_details_pb2.QuotaFailure()
    assert status.details[0].Unpack(retry)
    assert status.details[1].Unpack(quota)
    assert retry.retry_delay.ToNanoseconds() == 1_250_000_000
    assert [(v.subject, v.description) for v in quota.violations] == [
        ("tenant:t1", refusal.description)
    ]
    # What the guard aborts with.
    converted = rpc_status.to_status(status)
    assert converted.code is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_retry_delay_is_rounded_up() -> None:
    clock = FakeClock()
    rl = limiter(clock, tests_per_second=3.0, tests_burst=1)
    rl.check("t1", CallClass.TEST)
    refusal = rl.check("t1", CallClass.TEST)
    assert refusal is not None
    retry = error_details_pb2.RetryInfo()
    assert to_rpc_status(refusal).details[0].Unpack(retry)
    assert retry.retry_delay.ToNanoseconds() == 333_333_334
    assert retry.retry_delay.ToNanoseconds() / 1e9 >= refusal.retry_after
