"""The one clock: instants are stored in UTC (docs/money.md, "Money, energy, time")."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(UTC)
