"""Rate limits count per calendar minute: a test that straddles two minutes sees two limits' worth."""

from __future__ import annotations

import time


def wait_for_a_fresh_minute(needed: float) -> float:
    """Seconds to wait so that the next `needed` seconds of requests fall in one minute's window."""
    left = 60 - time.time() % 60
    return 0.0 if left >= needed else left + 0.5
