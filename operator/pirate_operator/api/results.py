"""Where a pool's results land, and whether they outlive the pods (DESIGN §6): pure.

The reconciler writes HSDS records to ``DATABASE_URL`` and the recorder writes its files to
``OUTPUT_DIR``. A worker pod's own storage (the image's work directory on an emptyDir) is deleted
with the pod, which scale-in and scale-to-zero do all the time, so a pool whose results would land
there loses them. This module says which roles write what, where, and what is wrong with it; the
Deployment builder mounts what it says and the operator reports the problems as the
``ResultsNotDurable`` condition.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import unquote, urlsplit

from pirate_operator.api.roles import EffectiveRole
from pirate_operator.api.spec import PoolSpec
from pirate_worker.contracts.queues import RECONCILER_QUEUE, RECORDER_QUEUE

#: Working directory of a worker pod: an emptyDir, gone with the pod.
WORK_DIR: Final = "/var/lib/pirate-workers"
#: The recorder's OUTPUT_DIR; ``spec.outputs``' claim is mounted here.
OUTPUT_DIR: Final = f"{WORK_DIR}/outputs"
#: Schemes of DATABASE_URL the workers accept (pirate_worker.db.engine).
DATABASE_SCHEMES: Final = ("sqlite", "postgresql", "postgresql+psycopg")
#: Replicas a SQLite file can take as writers: one.
SQLITE_WRITERS: Final = 1


def writes_database(role: EffectiveRole) -> bool:
    """Whether the role's workers run reconciler jobs (the HSDS database's writers)."""
    return RECONCILER_QUEUE in role.queues


def writes_outputs(role: EffectiveRole) -> bool:
    """Whether the role's workers run recorder jobs (the files under OUTPUT_DIR)."""
    return RECORDER_QUEUE in role.queues


def sqlite_file(url: str) -> str | None:
    """The file path of a ``sqlite:///`` URL (absolute when the URL has four slashes), else None."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        return None
    path = unquote(parts.path).removeprefix("/")
    return path or None


def database_on_claim(spec: PoolSpec) -> bool:
    """Whether the pool's database is a SQLite file under OUTPUT_DIR, i.e. on the outputs claim."""
    if spec.outputs is None or spec.database is None or spec.database.url is None:
        return False
    path = sqlite_file(spec.database.url)
    return path is not None and path.startswith(f"{OUTPUT_DIR}/")


def mounts_outputs(spec: PoolSpec, role: EffectiveRole) -> bool:
    """Whether the role's pods mount the outputs claim: recorders, and SQLite writers on the claim."""
    if spec.outputs is None:
        return False
    return writes_outputs(role) or (writes_database(role) and database_on_claim(spec))


def durability_problems(spec: PoolSpec, roles: Mapping[str, EffectiveRole]) -> list[str]:
    """Every way the pool's results would be lost with its pods, one line each naming the fix."""
    problems: list[str] = []
    database_writers = [role for role in roles.values() if writes_database(role)]
    if database_writers:
        problems += _database_problems(spec, database_writers)
    if spec.outputs is None and any(writes_outputs(role) for role in roles.values()):
        problems.append(
            "recorder files go to each pod's own storage and are deleted with it: "
            "set spec.outputs.persistentVolumeClaim"
        )
    return problems


def _database_problems(spec: PoolSpec, writers: list[EffectiveRole]) -> list[str]:
    database = spec.database
    if database is None:
        return [
            "HSDS records go to a SQLite file on each reconciler pod's own storage and are deleted with it: "
            "set spec.database (PostgreSQL)"
        ]
    if database.url is None:
        # A URL from a Secret is not read here (the operator keeps away from credentials): it is
        # taken for the server database it is documented to be.
        return []
    path = sqlite_file(database.url)
    if path is None:
        return []
    if not database_on_claim(spec):
        return [
            f"spec.database.url: SQLite file {path} is on each reconciler pod's own storage: use PostgreSQL, "
            f"or a file under {OUTPUT_DIR}/ with spec.outputs set"
        ]
    return [
        f"spec.database.url: a SQLite file on a claim takes one writer, role {role.name} may run "
        f"{role.max_replicas} replicas: set its maxReplicas to {SQLITE_WRITERS} or use PostgreSQL"
        for role in writers
        if role.max_replicas > SQLITE_WRITERS
    ]


def database_url_problems(url: str) -> list[str]:
    """Problems of ``spec.database.url`` itself: its scheme, and a password that belongs in a Secret."""
    where = "spec.database.url"
    parts = urlsplit(url)
    if parts.scheme not in DATABASE_SCHEMES:
        return [f"{where}: must start with {', '.join(s + '://' for s in DATABASE_SCHEMES)}"]
    if parts.password is not None:
        return [f"{where}: carries a password; put the URL in a Secret and use spec.database.urlSecretRef"]
    if parts.scheme != "sqlite" and not parts.path.removeprefix("/"):
        return [f"{where}: a PostgreSQL URL needs a database name (postgresql://USER@HOST/DB)"]
    if parts.scheme == "sqlite" and sqlite_file(url) is None:
        return [f"{where}: a SQLite URL needs a file (sqlite:////var/lib/pirate-workers/outputs/hsds.db)"]
    return []
