"""Operator-side commands of ``pirate-workers``: ``operator``, ``simulate`` and ``crd``.

Registered into the main CLI when the ``operator`` extra is installed. Each command only parses
options and delegates; heavy imports (kopf, kubernetes, matplotlib) happen inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

operator_app = typer.Typer(add_completion=False)


@operator_app.command()
def crd() -> None:
    """Print the PirateWorkerPool CustomResourceDefinition (generated from the models)."""
    from pirate_operator.api.crd import crd_yaml

    typer.echo(crd_yaml(), nl=False)


@operator_app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def operator(
    ctx: typer.Context,
    namespace: Annotated[
        list[str] | None, typer.Option("--namespace", "-n", help="watch only these namespaces (repeatable)")
    ] = None,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="watch every namespace")
    ] = False,
) -> None:
    """Run the operator (wraps ``kopf run`` with the project's settings; extra options go to kopf)."""
    from pirate_operator.runner import run_operator

    code = run_operator(namespaces=namespace or [], all_namespaces=all_namespaces, kopf_args=ctx.args)
    raise typer.Exit(code)


@operator_app.command()
def simulate(
    trace: Annotated[Path, typer.Argument(help="demand trace JSON (see the traces README)")],
    policy: Annotated[str, typer.Option(help="pirate, keda or hpa")] = "pirate",
    plot: Annotated[Path | None, typer.Option(help="draw replicas vs demand into this PNG")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    seed: Annotated[int, typer.Option(help="random seed for job durations")] = 1,
) -> None:
    """Replay a demand trace through a scaling policy and report cost and waiting time."""
    from pirate_operator.simulate.command import simulate_command

    raise typer.Exit(simulate_command(trace, policy=policy, plot=plot, as_json=as_json, seed=seed))
