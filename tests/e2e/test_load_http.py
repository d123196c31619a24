"""20,000 observations from 16 concurrent clients over HTTP: every acknowledged one is stored exactly once."""

from __future__ import annotations

from typing import Any

import pytest

from bench.load_test import report, send_observations

pytestmark = [pytest.mark.e2e, pytest.mark.emulator]


def test_20k_observations_from_16_clients_are_all_stored_once(server: str, seeded: Any) -> None:
    assert seeded.count("ops_observations") == 0
    result = send_observations(server, seeded, observations=20_000, clients=16, batch=100, timeout=90)
    print(report(result))
    assert not result.timed_out, report(result)
    assert result.errors == 0 and result.error_rate == 0.0, result.error_samples
    assert result.failed_batches == 0
    assert result.accepted == 20_000
    assert result.stored == result.accepted
