"""Time budgets: ``--budget 10m`` parsed, and a clock that says how much of it is left."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from transferkit.errors import ConfigError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_budget(text: str | float | None) -> float | None:
    """Seconds in ``"90s"``, ``"10m"``, ``"1.5h"`` or a plain number of seconds; None stays None.

    Raises:
        ConfigError: text that is not a positive duration.

    Example:
        >>> parse_budget("10m")
        600.0
    """
    if text is None or text == "":
        return None
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*", str(text).lower())
        if match is None:
            raise ConfigError(f"budget {text!r}: expected a duration such as 90s, 10m or 1h")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds <= 0:
        raise ConfigError(f"budget {text!r}: must be more than zero")
    return seconds


@dataclass
class Budget:
    """A time budget started now; ``seconds`` None means no limit."""

    seconds: float | None
    started: float = field(default_factory=time.perf_counter)

    def spent(self) -> float:
        return time.perf_counter() - self.started

    def left(self) -> float:
        return float("inf") if self.seconds is None else self.seconds - self.spent()

    def allows(self, cost: float) -> bool:
        """Whether ``cost`` more seconds fit in what is left."""
        return cost <= self.left()
