"""Contracts shared by the worker and the operator: queue names, payload models, Redis keys.

This is the only part of ``pirate_worker`` the operator imports, so it depends on nothing but
pydantic and the standard library.
"""
