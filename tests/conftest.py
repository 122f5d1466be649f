"""Shared test fixtures.

Tests that need root or working BPF ask for the `require_root` or `require_bpf` fixture (or use
`@pytest.mark.usefixtures("require_bpf")`). Where that is missing they are skipped, except when
SYSREPLAY_REQUIRE_ROOT_TESTS=1 (set by .ci/run): then they fail, so CI can never pass by quietly
skipping the capture tests.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REQUIRE_ROOT_TESTS_ENV = "SYSREPLAY_REQUIRE_ROOT_TESTS"
RAW_SYSCALLS_EVENTS = Path("/sys/kernel/tracing/events/raw_syscalls")


def unavailable(reason: str) -> None:
    """Skip the running test, or fail it when root tests are required."""
    if os.environ.get(REQUIRE_ROOT_TESTS_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ROOT_TESTS_ENV}=1, so this fails instead of skipping)")
    pytest.skip(reason)


def missing_root() -> str | None:
    return None if os.geteuid() == 0 else "needs root"


def missing_bpf() -> str | None:
    """Why BPF capture cannot run here, or None. Cheap: no program is compiled."""
    if reason := missing_root():
        return reason
    if importlib.util.find_spec("bcc") is None:
        return "needs BCC (python3-bpfcc; run scripts/setup.sh)"
    if not RAW_SYSCALLS_EVENTS.is_dir():
        return f"needs tracefs with {RAW_SYSCALLS_EVENTS} (run scripts/setup.sh)"
    return None


@pytest.fixture
def require_root() -> None:
    if reason := missing_root():
        unavailable(reason)


@pytest.fixture
def require_bpf() -> None:
    if reason := missing_bpf():
        unavailable(reason)
