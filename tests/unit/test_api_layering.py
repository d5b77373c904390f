"""``api`` and ``scaling`` are pure: importing them loads no client of Kubernetes or Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys

FORBIDDEN = ("kopf", "kubernetes", "redis", "rq")

_PROBE = """
import json, sys
import pirate_operator.api, pirate_operator.scaling
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_api_and_scaling_import_no_io_clients() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, check=True, timeout=60
    )
    loaded = set(json.loads(result.stdout))
    assert "pirate_operator" in loaded
    assert loaded.isdisjoint(FORBIDDEN), sorted(loaded & set(FORBIDDEN))
