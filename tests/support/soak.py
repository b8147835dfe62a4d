"""Settings of the property and fuzz tests: hypothesis budgets (longer with MAILACCOUNTS_SOAK)."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from mailaccounts_server.config import Settings

# `make soak` sets it; any value but "" and "0" turns the long runs on.
SOAK_ENV = "MAILACCOUNTS_SOAK"
SOAK = os.environ.get(SOAK_ENV, "") not in ("", "0")


def budget(ci: int, soak: int) -> int:
    """`ci` in the default run, `soak` under MAILACCOUNTS_SOAK=1."""
    return soak if SOAK else ci


def property_settings(max_examples: int, **overrides: Any) -> settings:
    """No deadline (calls go over the network to a real server), no example database (the
    failure report carries the falsifying example and a reproduce blob instead), no explain
    phase (its line tracing makes a failing run slower than the test timeout), and the
    health checks that fixture-shared servers and huge inputs would trip turned off."""
    options: dict[str, Any] = {
        "phases": [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
    }
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=False,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
        **(options | overrides),
    )


def without_rate_limits() -> dict[str, Any]:
    """Server settings with every per-tenant rate limit off (0): these tests call as fast as
    they can, and a RESOURCE_EXHAUSTED on a bookkeeping call is not what they test."""
    return {
        name: 0
        for name in Settings.model_fields
        if name.startswith("rate_") and not name.endswith("_burst")
    }
