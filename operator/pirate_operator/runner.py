"""``pirate-workers operator``: the operator process's entrypoint, wrapping ``kopf run``.

The settings are read once here (a bad value stops the process with one line), turned into
``kopf run`` options (namespaces, peering or standalone, priority, log level) and handed to the
handlers through their registry. Extra arguments go to ``kopf run`` as they are and win over
what the environment implies (``--standalone``, ``--peering``, ``--priority``, ``-v/-d/-q``).
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from collections.abc import Sequence
from typing import Final

import click
from kopf import cli as kopf_cli

from pirate_operator.handlers import PeeringCheck, build_registry
from pirate_operator.settings import OperatorConfigError, OperatorSettings, load_operator_settings

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
_PEERING_FLAGS = ("--standalone", "--peering", "-P")
_PRIORITY_FLAGS = ("--priority", "-p")
_LOG_FLAGS = ("-v", "--verbose", "-d", "--debug", "-q", "--quiet")

#: glibc's mallopt() parameter number for the arena limit.
M_ARENA_MAX: Final = -8
MALLOC_ARENAS: Final = 2


def kopf_run_args(
    settings: OperatorSettings, namespaces: Sequence[str], all_namespaces: bool, kopf_args: Sequence[str]
) -> list[str]:
    """The ``kopf run`` command line for these settings and CLI options."""
    if namespaces and all_namespaces:
        raise click.UsageError("give --namespace or --all-namespaces, not both")
    args = ["run"]
    chosen = list(namespaces) or ([] if all_namespaces else settings.namespaces)
    if chosen:
        for namespace in chosen:
            args += ["--namespace", namespace]
    else:
        args.append("--all-namespaces")
    given = set(kopf_args) | {arg.split("=", 1)[0] for arg in kopf_args}
    if not given & set(_PEERING_FLAGS):
        if settings.OPERATOR_PEERING:
            args += ["--peering", settings.OPERATOR_PEERING]
        else:
            args.append("--standalone")
    if not given & set(_PRIORITY_FLAGS) and settings.OPERATOR_PEERING:
        args += ["--priority", str(settings.peering_priority)]
    if not given & set(_LOG_FLAGS):
        args += {"DEBUG": ["--verbose"], "INFO": [], "WARNING": ["--quiet"], "ERROR": ["--quiet"]}[
            settings.LOG_LEVEL
        ]
    return [*args, *kopf_args]


def peering_check(settings: OperatorSettings, args: Sequence[str]) -> PeeringCheck | None:
    """The peering object to verify at start, when the environment chose peering (not kopf args)."""
    if not settings.OPERATOR_PEERING or "--peering" not in args:
        return None
    if args[args.index("--peering") + 1] != settings.OPERATOR_PEERING:
        return None
    if "--all-namespaces" in args:
        return PeeringCheck(settings.OPERATOR_PEERING, None)
    namespaces = tuple(args[i + 1] for i, arg in enumerate(args) if arg == "--namespace")
    return PeeringCheck(settings.OPERATOR_PEERING, namespaces)


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> None:
    """Cap glibc's malloc arenas before the I/O threads start (like ``MALLOC_ARENA_MAX``).

    Each thread that allocates may otherwise get an arena of its own; with a pool of I/O threads
    that is most of the operator's resident memory beyond its imports. A no-op off glibc.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, arenas)


def run_operator(namespaces: list[str], all_namespaces: bool, kopf_args: list[str]) -> int:
    """Run the operator until it is stopped; returns the process exit code."""
    try:
        settings = load_operator_settings()
        args = kopf_run_args(settings, namespaces, all_namespaces, kopf_args)
    except (OperatorConfigError, click.UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    limit_malloc_arenas()
    controls = kopf_cli.CLIControls(registry=build_registry(settings, peering_check(settings, args)))
    try:
        kopf_cli.main.main(
            args=args, obj=controls, prog_name="pirate-workers operator", standalone_mode=False
        )
    except click.ClickException as exc:
        print(f"error: {exc.format_message()}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # the one line the process ends with; kopf has logged the details
        print(f"error: operator stopped: {_reason(exc)}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _reason(exc: Exception) -> str:
    """The handlers' own messages when kopf reports that startup handlers failed."""
    outcomes = getattr(exc, "outcomes", None) or {}
    messages = [
        str(outcome.exception) for outcome in outcomes.values() if getattr(outcome, "exception", None)
    ]
    return "; ".join(messages) or str(exc)
