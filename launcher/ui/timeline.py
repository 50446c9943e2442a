"""The charts' memory: one row of figures per tick, kept for the window (15 minutes)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

WINDOW_S = 15 * 60.0

Figures = dict[str, float | None]  # series key ("DEPLOYMENT\tFIGURE") -> value; None: no value this tick


@dataclass
class Timeline:
    window: float = WINDOW_S
    rows: deque[tuple[float, Figures]] = field(default_factory=deque)

    def add(self, at: float, figures: Figures) -> None:
        self.rows.append((at, figures))
        while self.rows and self.rows[0][0] < at - self.window:
            self.rows.popleft()

    def columns(self) -> dict[str, object]:
        """Every row as columns, the way the page's charts take them: ``t`` and one list per series
        (None where a row has no value for it, e.g. before a deployment existed)."""
        keys = sorted({k for _, figures in self.rows for k in figures})
        return {"t": [round(at, 3) for at, _ in self.rows],
                "series": {k: [figures.get(k) for _, figures in self.rows] for k in keys}}  # fmt: skip
