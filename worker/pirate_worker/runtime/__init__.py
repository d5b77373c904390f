"""Process-level machinery: the RQ worker, its supervisor, health/metrics server, embedded Redis."""
