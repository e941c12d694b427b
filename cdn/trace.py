"""The per-request trace, recorded cheaply: `CdnTrace` is an `edge.events.Trace` whose `add`
keeps a raw tuple (stage, decision, detail, monotonic time) and whose `steps` are formatted only
when someone reads them (`/trace/{ray}`, the dashboard, tests). Every request still gets one."""

from __future__ import annotations

import time
from typing import Any

from edge.events import Trace, TraceStep

RawStep = tuple[str, str, dict[str, Any], float]


class CdnTrace(Trace):
    __slots__ = ("_raw",)

    def __init__(self, ray_id: str) -> None:
        self.ray_id = ray_id
        self.started = time.monotonic()
        self._raw: list[RawStep] = []

    def add(self, stage: str, decision: str, **detail: Any) -> None:
        self._raw.append((stage, decision, detail, time.monotonic()))

    @property
    def steps(self) -> list[TraceStep]:
        started = self.started
        return [
            TraceStep(stage, decision, detail, round((t - started) * 1000, 3))
            for stage, decision, detail, t in self._raw
        ]

    @steps.setter
    def steps(self, steps: list[TraceStep]) -> None:
        started = self.started
        self._raw = [(s.stage, s.decision, s.detail, started + s.at_ms / 1000) for s in steps]
