"""Replicas against demand over time, one panel per role, blocked windows shaded (PNG, matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path

from pirate_operator.simulate.engine import Outcome


def plot_outcome(outcome: Outcome, path: Path) -> None:
    """Draw the run's timeline into ``path``.

    Demand is drawn in pods: jobs queued + running divided by ``targetJobsPerWorker x
    workersPerPod``, so it reads on the same axis as the replicas it should have produced; it is
    clipped at 1.5 x maxReplicas (a backlog would otherwise flatten the replicas).
    Raises ``OSError`` when the file cannot be written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trace = outcome.trace
    names = list(trace.roles)
    times = [sample.t / 60 for sample in outcome.samples]
    figure, axes = plt.subplots(len(names), 1, sharex=True, figsize=(11, 2.6 * len(names)), squeeze=False)
    for axis, name in zip(axes[:, 0], names, strict=True):
        role = trace.roles[name]
        demand = [sample.demand[name] / role.capacity_per_pod for sample in outcome.samples]
        replicas = [sample.replicas[name] for sample in outcome.samples]
        top = 1.5 * max(role.max_replicas, *replicas, 1)
        clipped = " (clipped)" if max(demand, default=0) > top else ""
        axis.plot(times, demand, color="tab:gray", linewidth=0.8, label=f"demand ÷ target per pod{clipped}")
        axis.step(times, replicas, where="post", color="tab:blue", linewidth=1.4, label="replicas")
        if role.gated_by_provider:
            for index, window in enumerate(trace.blocked):
                axis.axvspan(
                    window.start / 60,
                    window.end / 60,
                    color="tab:red",
                    alpha=0.12,
                    label="provider blocked" if index == 0 else None,
                )
        axis.axhline(role.max_replicas, color="tab:blue", linestyle=":", linewidth=0.8)
        axis.set_ylabel(f"{name}\npods")
        axis.set_ylim(0, top)
        axis.legend(loc="upper right", fontsize="small")
    axes[-1, 0].set_xlabel("minutes")
    figure.suptitle(f"{trace.name}: policy {outcome.policy} (seed {outcome.seed})")
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=110)
    finally:
        plt.close(figure)
