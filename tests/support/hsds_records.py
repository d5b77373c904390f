"""Aligned HSDS records for reconciler tests and the benchmark, as the LLM job chains them."""

from __future__ import annotations

from typing import Any

from pirate_worker.contracts.payloads import JobResult, JobStatus, LLMJob, LLMResponse

ORGANIZATIONS = 50
PROGRAMS = 4


def aligned_record(i: int, *, organizations: int = ORGANIZATIONS) -> dict[str, Any]:
    """Record ``i``: organization ``i % organizations`` (its phone and a shared service with hours),
    one location of its own (address, phone), and a program shared by every ``organizations``-th record."""
    org = i % organizations
    hours = [{"freq": "WEEKLY", "byday": "MO,WE", "opens_at": "09:00", "closes_at": "12:00"}]
    return {
        "organization": {
            "name": f"Harbor Pantry {org}",
            "description": "Community food pantry",
            "website": f"https://pantry{org}.example",
            "email": None,
            "phones": [{"number": f"555-01{org:02d}", "type": "voice"}],
        },
        "services": [
            {"name": "Food Pantry", "status": "active", "description": "Groceries", "schedules": hours},
            {"name": f"Program {i // organizations % PROGRAMS}", "status": "active", "description": None},
        ],
        "locations": [
            {
                "location_type": "physical",
                "name": f"Site {i}",
                "latitude": 41.0 + i * 0.001,
                "longitude": -72.0 - i * 0.001,
                "addresses": [
                    {
                        "address_1": f"{i} Main St",
                        "city": "Springfield",
                        "state_province": "MA",
                        "postal_code": "01101",
                        "country": "US",
                        "address_type": "physical",
                    }
                ],
                "phones": [{"number": f"555-2{i:03d}", "type": "voice"}],
            }
        ],
    }


def expected_rows(records: int, *, organizations: int = ORGANIZATIONS) -> dict[str, int]:
    """Rows that records ``0..records-1`` make (records >= organizations * PROGRAMS for the services)."""
    programs = min(PROGRAMS, -(-records // organizations))
    return {
        "organization": organizations,
        "location": records,
        "address": records,
        "service": organizations * (1 + programs),
        "service_at_location": records * 2,
        "phone": organizations + records,
        "schedule": organizations,
        "source_record": records,
        "record_version": 0,
    }


def job_result(i: int, document: dict[str, Any], scraper: str = "bench") -> dict[str, Any]:
    """The JSON payload the LLM job enqueues for the reconciler."""
    job = LLMJob(
        id=f"rec-{i}", prompt=f"record {i}", metadata={"scraper_id": scraper, "content_hash": f"h{i}"}
    )
    result = JobResult(
        job_id=job.id,
        job=job,
        status=JobStatus.COMPLETED,
        result=LLMResponse(text="{}", model="rules-v1", parsed=document),
    )
    return result.model_dump(mode="json")
