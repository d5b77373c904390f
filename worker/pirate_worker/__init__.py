"""pirate-workers: Pantry Pirate Radio's RQ worker system (worker side)."""

__version__ = "0.1.0"
