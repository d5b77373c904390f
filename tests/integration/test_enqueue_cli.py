"""``pirate-workers enqueue``: dedup at enqueue, and bad files rejected before anything is queued."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ROOT

pytestmark = pytest.mark.integration

VALID = {
    "scraper_id": "tiny",
    "raw_data": [{"org_name": "Tiny Pantry", "location": "1 Main St, Dayton, OH 45402"}],
}


def enqueue(redis_url: str, *paths: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pirate_worker", "enqueue", "--json", *map(str, paths)],
        env={**os.environ, "REDIS_URL": redis_url}, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_enqueue_examples_deduplicates(redis_url, redis):
    result = enqueue(redis_url, ROOT / "examples")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["enqueued"] == 50
    assert report["deduplicated"] == 6
    assert redis.llen("rq:queue:llm") == 50
    # Same files again while the jobs are still queued: all of them are in flight already.
    again = json.loads(enqueue(redis_url, ROOT / "examples").stdout)
    assert again["enqueued"] == 0
    assert again["deduplicated"] == 56
    assert {job["outcome"] for job in again["jobs"]} == {"deduplicated: same content already queued"}


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"scraper_id": "x"}', "raw_data"),
        (b'{"scraper_id": "../evil", "raw_data": []}', "scraper_id"),
        (b'{"scraper_id": "x", "raw_data": [{}]}', "empty"),
        (b'{"scraper_id": "x", "raw_data": "nope"}', "raw_data"),
        ('{"scraper_id": "x", "raw_data": ["caf\u00e9"]}'.encode("latin-1"), "not UTF-8"),
        (json.dumps({"scraper_id": "x", "raw_data": ["x" * 2_000_000]}).encode(), "byte record limit"),
    ],
)
def test_malformed_file_exits_2_with_one_line_and_enqueues_nothing(
    redis_url, redis, tmp_path, content, needle
):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(VALID))
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    result = enqueue(redis_url, good, bad)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert needle in lines[0]
    assert "bad.json" in lines[0]
    assert redis.llen("rq:queue:llm") == 0


def test_enqueue_with_redis_down_is_one_line(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(VALID))
    result = enqueue("redis://127.0.0.1:1/0", good)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "cannot reach Redis" in result.stderr


def test_status_json_reports_queues_and_provider(redis_url, redis):
    enqueue(redis_url, ROOT / "examples")
    result = subprocess.run(
        [sys.executable, "-m", "pirate_worker", "status", "--json"],
        env={**os.environ, "REDIS_URL": redis_url}, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    snap = json.loads(result.stdout)
    llm = next(q for q in snap["queues"] if q["name"] == "llm")
    assert llm["queued"] == 50
    assert snap["provider"]["state"] == "ok"
    assert snap["content_store"]["enqueue_hits"] == 6
    assert snap["totals"]["records_read"] == 56


def test_status_of_one_job_by_id(redis_url):
    report = json.loads(enqueue(redis_url, ROOT / "examples").stdout)
    job_id = report["jobs"][0]["job_id"]
    result = subprocess.run(
        [sys.executable, "-m", "pirate_worker", "status", "--job", job_id],
        env={**os.environ, "REDIS_URL": redis_url}, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    assert view["id"] == job_id
    assert view["status"] == "queued"
    assert view["queue"] == "llm"
    assert view["retries_left"] == 3
    missing = subprocess.run(
        [sys.executable, "-m", "pirate_worker", "status", "--job", "nope"],
        env={**os.environ, "REDIS_URL": redis_url}, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: no job with id 'nope'"
