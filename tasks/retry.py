"""The retry policy shared by Trailforge's HTTP clients (retriever servers, OpenAI-compatible APIs).

Only what waiting can fix is retried: a timeout, a dropped connection, 408, 429 and 5xx. Delays
grow exponentially with full jitter around the nominal value, so many clients refused at once do
not come back at once.
"""

from __future__ import annotations

import random

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def backoff_delay(attempt: int, base_s: float, cap_s: float = float("inf")) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): base * 2**attempt, capped, times 0.5-1.5."""
    return min(cap_s, base_s * 2**attempt) * (0.5 + random.random())
