"""Durations as operators type them: ``30m``, ``24h``, ``7d`` (s, m, h, d, w).

One parser for every place that takes one: the command line's ``--within``, ``--quiet-period``
and moments, and the console API's ``within``.
"""

from __future__ import annotations

import re

DURATION = re.compile(r"^(\d+)([smhdw])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION_HINT = "use a number and a unit: 30m, 24h, 7d (s, m, h, d, w)"


def parse_duration(text: str) -> int:
    """``30m`` -> 1800 seconds. Raises ValueError naming the accepted forms."""
    text = text.strip()
    if text == "0":
        return 0
    match = DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration: {DURATION_HINT}")
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)]
