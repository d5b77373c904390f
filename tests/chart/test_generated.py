"""One source per artefact: the chart's CRD, manifests/ and the values table never drift.

hack/gen_manifests.py regenerates everything in memory here and the bytes on disk must match;
run `python hack/gen_manifests.py` after changing the chart, values.yaml or the CRD models.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.chart.conftest import CHART_DIR, ROOT


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_manifests", ROOT / "hack" / "gen_manifests.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    return load_generator()


def test_generated_files_match_a_fresh_generation(gen: ModuleType) -> None:
    files: dict[Path, str] = gen.generate()

    assert {path.relative_to(ROOT).as_posix() for path in files} == {
        "charts/pirate-workers/crds/pirateworkerpools.pirateradio.dev.yaml",
        "charts/pirate-workers/README.md",
        "manifests/crd.yaml",
        "manifests/namespace.yaml",
        "manifests/rbac.yaml",
        "manifests/operator.yaml",
        "manifests/redis.yaml",
        "manifests/postgresql.yaml",
        "manifests/sample-pool.yaml",
    }
    stale = [path.relative_to(ROOT).as_posix() for path in gen.drifted(files)]
    assert stale == [], "out of date; run: python hack/gen_manifests.py"


def test_chart_crd_and_manifest_crd_are_the_bytes_the_cli_prints() -> None:
    printed = subprocess.run(
        [str(Path(sys.executable).parent / "pirate-workers"), "crd"],
        capture_output=True,
        check=True,
    ).stdout

    assert (CHART_DIR / "crds" / "pirateworkerpools.pirateradio.dev.yaml").read_bytes() == printed
    assert (ROOT / "manifests" / "crd.yaml").read_bytes() == printed
    assert list((CHART_DIR / "crds").iterdir()) == [
        CHART_DIR / "crds" / "pirateworkerpools.pirateradio.dev.yaml"
    ]


def test_manifests_parse_and_contain_no_helm_only_objects() -> None:
    kinds: dict[str, list[str]] = {}
    for path in sorted((ROOT / "manifests").glob("*.yaml")):
        documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        assert documents, f"{path.name} is empty"
        for doc in documents:
            annotations = doc["metadata"].get("annotations") or {}
            assert "helm.sh/hook" not in annotations, f"{path.name}: {doc['metadata']['name']} is a Helm hook"
            assert doc["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") in (None, "kubectl")
        kinds[path.name] = [doc["kind"] for doc in documents]

    assert kinds == {
        "crd.yaml": ["CustomResourceDefinition"],
        "namespace.yaml": ["Namespace"],
        "operator.yaml": ["Deployment", "Service", "NetworkPolicy"],
        "postgresql.yaml": ["Service", "StatefulSet", "NetworkPolicy"],
        "rbac.yaml": ["ServiceAccount", "Role", "RoleBinding"],
        "redis.yaml": ["Service", "StatefulSet", "NetworkPolicy"],
        "sample-pool.yaml": ["PersistentVolumeClaim", "PirateWorkerPool"],
    }


def test_manifests_take_credentials_from_the_secrets_the_readme_has_you_create(gen: ModuleType) -> None:
    """kubectl cannot generate a password: manifests name Secrets, and their header says how to make them."""
    texts = {path.name: path.read_text() for path in (ROOT / "manifests").glob("*.yaml")}
    assert not [name for name, text in texts.items() if "kind: Secret" in text]
    for file, secret in (
        ("redis.yaml", gen.REDIS_AUTH_SECRET),
        ("postgresql.yaml", gen.POSTGRESQL_AUTH_SECRET),
    ):
        assert f"create secret generic {secret}" in texts[file]
        header, body = texts[file].split("\n---\n", 1)
        assert f"create secret generic {secret}" in header
        assert f'"{secret}"' in body, f"{file} does not reference {secret}"
    readme = (ROOT / "README.md").read_text()
    assert f"create secret generic {gen.REDIS_AUTH_SECRET}" in readme
    assert f"create secret generic {gen.POSTGRESQL_AUTH_SECRET}" in readme


def test_sample_pool_is_commented_and_valid_for_the_models() -> None:
    from pirate_operator.api.pool import PirateWorkerPool

    text = (ROOT / "manifests" / "sample-pool.yaml").read_text()
    documents = [doc for doc in yaml.safe_load_all(text) if doc]
    (document,) = [doc for doc in documents if doc["kind"] == "PirateWorkerPool"]
    (claim,) = [doc for doc in documents if doc["kind"] == "PersistentVolumeClaim"]
    pool = PirateWorkerPool.model_validate(document)
    assert pool.spec.outputs is not None
    assert pool.spec.outputs.persistent_volume_claim.claim_name == claim["metadata"]["name"]
    assert pool.spec.database is not None and pool.spec.database.url_secret_ref is not None

    assert pool.spec.provider.name == "rules"
    comment_lines = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    assert len(comment_lines) >= 15, "the sample explains its fields"


def test_every_values_key_is_documented(gen: ModuleType) -> None:
    text = (CHART_DIR / "values.yaml").read_text()
    comments: dict[str, str] = gen.parse_values_comments(text)
    loaded_paths = [path for path, _ in gen.walk_values(yaml.safe_load(text))]

    assert sorted(comments) == sorted(loaded_paths), "the comment parser must see exactly the YAML keys"
    undocumented = [path for path in loaded_paths if not comments[path]]
    assert undocumented == [], "values.yaml keys need a comment right above them"
    readme = (CHART_DIR / "README.md").read_text()
    missing = [path for path in loaded_paths if f"| `{path}` |" not in readme]
    assert missing == []


def test_values_comment_parser_notices_an_undocumented_key(gen: ModuleType) -> None:
    text = "# Documented.\na:\n  # Child.\n  b: 1\n  c: 2\n\n# Spaced away from d.\n\nd: {}\n"
    assert gen.parse_values_comments(text) == {"a": "Documented.", "a.b": "Child.", "a.c": "", "d": ""}


def schema_role_properties() -> set[str]:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    return set(schema["definitions"]["role"]["properties"])


def crd_spec_schema() -> dict[str, Any]:
    from pirate_operator.api.crd import crd_manifest

    version = crd_manifest()["spec"]["versions"][0]
    spec: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return spec


def test_values_schema_roles_accept_exactly_the_crd_role_fields() -> None:
    """values.schema.json is hand-written; this keeps its copy of the role fields honest."""
    crd_role = crd_spec_schema()["properties"]["roles"]["additionalProperties"]["properties"]
    assert schema_role_properties() == set(crd_role)


def test_pool_values_cover_the_crd_spec() -> None:
    """Every spec field of the CRD is reachable from the chart's values (or derived by the chart)."""
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    pool_values = set(schema["properties"]["pool"]["properties"])
    # From the top-level redis, provider, database and outputs values.
    derived = {"redis", "provider", "database", "outputs"}
    assert set(crd_spec_schema()["properties"]) <= pool_values | derived


def test_chart_app_version_is_the_project_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert chart["appVersion"] == project["version"]
