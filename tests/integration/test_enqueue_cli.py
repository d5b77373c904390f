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
        # The bad-input catalogue of issue 7 (item 2): each used to be a traceback or slip through.
        (json.dumps({"scraper_id": "x", "raw_data": [{"notes": "x" * 10_000_000}]}).encode(), "record limit"),
        (b"", "not valid JSON"),
        (b'\xef\xbb\xbf{"scraper_id": "x", "raw_data": ["a"]}', "BOM"),
        (json.dumps({"scraper_id": "x", "raw_data": ["a"]}).encode("utf-16"), "not UTF-8"),
        (b'{"scraper_id": "x", "raw_data": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}", "nested too deeply"),
        (b'{"scraper_id": "x", "raw_data": [{"n": ' + b"9" * 5000 + b"}]}", "integer string conversion"),
        (b'{"scraper_id": "x", "raw_data": [{"n": NaN}]}', "NaN is not a JSON number"),
        (b'{"scraper_id": "x", "raw_data": [{"n": -Infinity}]}', "-Infinity is not a JSON number"),
        (b'{"scraper_id": "x", "raw_data": ["\\ud800"]}', "unpaired UTF-16 surrogate"),
        (
            b'{"scraper_id": "x", "raw_data": [1, "a"]}',
            "raw_data[0]: must be a JSON object or a string, got a number",
        ),
        (
            b'{"scraper_id": "x", "raw_data": ["a", null]}',
            "raw_data[1]: must be a JSON object or a string, got null",
        ),
        (b'{"scraper_id": "x", "raw_data": [["a"]]}', "got an array"),
        (b'{"scraper_id": 7, "raw_data": ["a"]}', "scraper_id"),
        (b'{"scraper_id": "x", "raw_data": {"a": 1}}', "raw_data"),
        (b'{"scraper_id": "x", "raw_data": ["   "]}', "raw_data[0] is empty"),
        (json.dumps({"scraper_id": "x" * 200, "raw_data": ["a"]}).encode(), "scraper_id"),
    ],
)
def test_malformed_file_exits_2_with_one_line_and_enqueues_nothing(
    redis_url, redis, submit, sample_records, tmp_path, content, needle
):
    assert len(submit(sample_records[:2]).enqueued) == 2
    queued_before = redis.lrange("rq:queue:llm", 0, -1)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(VALID))
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    result = enqueue(redis_url, good, bad)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert needle in lines[0]
    assert "bad.json" in lines[0]
    assert "Traceback" not in result.stderr
    # All or nothing, and what was queued before is untouched.
    assert redis.lrange("rq:queue:llm", 0, -1) == queued_before


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda tmp: tmp / "missing.json", "missing.json: cannot read: No such file"),
        (lambda tmp: (tmp / "empty-dir").mkdir() or tmp / "empty-dir", "no scraper files found"),
        # Sparse: the size check must refuse it before reading 70 MB.
        (lambda tmp: os.truncate(tmp / "huge.json", 70 * 1024 * 1024) or tmp / "huge.json", "byte limit"),
    ],
    ids=["missing", "empty-folder", "over-64-MB"],
)
def test_unusable_paths_exit_2_with_one_line(redis_url, redis, tmp_path, make, needle):
    (tmp_path / "huge.json").touch()
    result = enqueue(redis_url, make(tmp_path))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert needle in line
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
