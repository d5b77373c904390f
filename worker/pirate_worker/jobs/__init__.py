"""Thin job functions RQ calls by dotted path; the work happens in services and llm."""
