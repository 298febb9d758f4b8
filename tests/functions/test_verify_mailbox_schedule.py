"""verify_mailbox schedules a verified mailbox's first health check within the CheckIntervalMinutes the
template gives it (CHECK_INTERVAL_MINUTES), not the layer's 6-hour default."""

from __future__ import annotations

from datetime import timedelta

import pytest

from onboarding import deps as wiring


@pytest.mark.parametrize("minutes", ["2", "360"])
def test_the_first_check_is_spread_over_the_configured_interval(
    moto_aws: None, monkeypatch: pytest.MonkeyPatch, minutes: str
) -> None:
    # Given the function's environment names an interval
    monkeypatch.setenv("CHECK_INTERVAL_MINUTES", minutes)
    wiring.reset()
    from functions.verify_mailbox import app

    # When its steps are built at cold start
    steps = app.deps()
    # Then verification schedules the first check within that interval
    assert steps.check_interval == timedelta(minutes=int(minutes))
