"""The demo's timeline PNG: demand, worker processes and provider state over time."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Timeline:
    """Samples taken while the pipeline runs: one row per tick."""

    t: list[float] = field(default_factory=list)
    demand: dict[str, list[int]] = field(default_factory=dict)
    workers: dict[str, list[int]] = field(default_factory=dict)
    blocked: list[bool] = field(default_factory=list)

    def add(self, t: float, demand: dict[str, int], workers: dict[str, int], blocked: bool) -> None:
        self.t.append(t)
        for role, value in demand.items():
            self.demand.setdefault(role, []).append(value)
        for role, value in workers.items():
            self.workers.setdefault(role, []).append(value)
        self.blocked.append(blocked)

    def draw(self, path: Path, title: str = "pirate-workers demo") -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, constrained_layout=True)
        for role, values in self.demand.items():
            top.plot(self.t, values, label=f"{role} demand")
        top.set_ylabel("jobs (queued + running)")
        top.legend(loc="upper right")
        top.set_title(title)
        for role, values in self.workers.items():
            bottom.step(self.t, values, where="post", label=f"{role} workers")
        bottom.set_ylabel("worker processes")
        bottom.set_xlabel("seconds")
        for start, end in _spans(self.t, self.blocked):
            for axis in (top, bottom):
                axis.axvspan(start, end, color="tab:red", alpha=0.15, label=None)
        bottom.legend(loc="upper right")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def _spans(t: list[float], flags: list[bool]) -> list[tuple[float, float]]:
    spans, start = [], None
    for moment, flag in zip(t, flags, strict=True):
        if flag and start is None:
            start = moment
        elif not flag and start is not None:
            spans.append((start, moment))
            start = None
    if start is not None and t:
        spans.append((start, t[-1]))
    return spans
