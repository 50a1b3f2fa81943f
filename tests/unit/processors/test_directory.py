"""The users directory keeps a profile whose quiet hours cannot be read, with a warning."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from notifier.contracts.codec import AvroCodec
from notifier.contracts.records import QuietHours, UserProfile
from notifier.contracts.registry import LocalSchemaRegistry
from notifier.settings import Settings
from processors.directory import UserDirectory
from tests.samples import sample


@pytest.mark.parametrize(
    ("quiet", "zone", "warning"),
    [
        (QuietHours("22:00", "07:00"), "Europe/Berlin", None),
        (None, "Mars/Olympus", None),  # no quiet hours: the zone is not read here
        (QuietHours("22:00", "07:00"), "Mars/Olympus", "'Mars/Olympus' is not an IANA time zone"),
        (QuietHours("10pm", "07:00"), "UTC", "'10pm' is not a time of day HH:MM"),
    ],
)
def test_unreadable_quiet_hours_are_warned_about_and_the_profile_kept(
    quiet: QuietHours | None, zone: str, warning: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    codec = AvroCodec(LocalSchemaRegistry())
    directory = UserDirectory(Settings(), codec)
    profile = replace(sample(UserProfile), user_id="u1", time_zone=zone, quiet_hours=quiet)
    with caplog.at_level(logging.WARNING, logger="notifier.directory"):
        directory.apply(b"u1", codec.encode(profile))
    assert directory.get("u1") == profile
    warnings = [r.getMessage() for r in caplog.records]
    if warning is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and "quiet hours of u1 ignored" in warnings[0]
        assert warning in warnings[0]
