"""The sandbox's request counts (`GET /_sandbox/stats`), kept as requests arrive."""

from __future__ import annotations

from adapters.sandbox.state import SandboxState


def test_counts_follow_what_was_recorded_and_reset() -> None:
    state = SandboxState(seed=1)
    assert state.counts() == (0, {})
    for provider in ("twilio", "sendgrid", "twilio"):
        state.start(provider, f"/{provider}")
    assert state.counts() == (3, {"twilio": 2, "sendgrid": 1})
    state.reset()
    assert state.counts() == (0, {})
    state.start("fcm", "/fcm")
    assert state.counts() == (1, {"fcm": 1})
