"""How workers name themselves and report being paused: read by the operator to map workers to pods."""

from __future__ import annotations

from typing import Final

#: RQ worker ``state`` of a worker that stops dequeuing while its provider is blocked.
WORKER_STATE_PAUSED: Final = "paused"


def worker_name(pod: str, role: str, index: int, pid: int) -> str:
    """``<pod>.<role>.<index>.<pid>``; the pod prefix maps a worker to its pod (pid keeps local
    processes on one host apart)."""
    return f"{pod}.{role}.{index}.{pid}"


def pod_of_worker(name: str, role: str) -> str | None:
    """The pod a worker runs in, or None for names not built by :func:`worker_name`.

    Pod names may contain dots, role names may not, so the name is split from the right. Workers
    named otherwise (plain ``rq worker``) belong to no known pod: counted, never mapped.
    """
    parts = name.rsplit(".", 3)
    if len(parts) != 4 or parts[1] != role or not parts[2].isdigit() or not parts[3].isdigit():
        return None
    return parts[0] or None
