"""Times as a person reads them: in their own time zone (the profile's time_zone)."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def format_local(instant: datetime, time_zone: str) -> str:
    """`instant` on the wall clock of `time_zone`, e.g. '2026-03-29 03:30 CEST'; an unknown
    zone (or a naive instant, taken as UTC) reads in UTC rather than failing a message."""
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    tz: tzinfo
    try:
        tz = ZoneInfo(time_zone)
    # OSError: a folder of the zone database ("Europe") is IsADirectoryError on Python 3.11
    except (ZoneInfoNotFoundError, ValueError, OSError):
        tz = UTC
    local = instant.astimezone(tz)
    return local.strftime("%Y-%m-%d %H:%M ") + (local.tzname() or "UTC")
