"""Run the real worker supervisor with the scripted provider.

``python -m tests.support.run_worker ROLE N``
"""

from __future__ import annotations

import logging
import sys

from pirate_worker.contracts.queues import queues_for_role
from pirate_worker.runtime.supervisor import WorkerPlan, run_workers
from pirate_worker.settings import load_settings


def main() -> int:
    role, count = sys.argv[1], int(sys.argv[2])
    settings = load_settings()
    logging.basicConfig(level=settings.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    plan = WorkerPlan.for_role(
        role, queues_for_role(role), count, provider_factory="tests.support.providers:build_scripted"
    )
    return run_workers(settings, plan)


if __name__ == "__main__":
    sys.exit(main())
