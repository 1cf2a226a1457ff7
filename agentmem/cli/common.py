"""What every command shares: the common options, one-line errors, JSON or text output, opening a Memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

HomeOpt = typer.Option(None, "--home", envvar="AGENTMEM_HOME", help="memory folder (default ~/.agentmem)")
ModelOpt = typer.Option(None, "--model", envvar="AGENTMEM_MODEL", help="local Hugging Face checkpoint folder")
JsonOpt = typer.Option(False, "--json", help="machine-readable output")
ServerOpt = typer.Option(None, "--server-url", envvar="AGENTMEM_SERVER_URL",
                         help="answer through this `agentmem serve` (default: in this process)")


def fail(msg: str) -> None:
    typer.echo(f"agentmem: {msg}", err=True)
    raise typer.Exit(1)


def say(message: str) -> None:
    typer.echo(message, err=True)


def open_memory(home: Optional[Path], model: Optional[str], server_url: Optional[str] = None,
                read_only: bool = False):
    from ..memory import Memory  # loads torch: only the commands that need a model pay for it

    kwargs = {"model": model} if model else {}
    if server_url:
        kwargs["server_url"] = server_url
    return Memory.open(home, progress=say, read_only=read_only, **kwargs)


def emit(obj, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str) if as_json else text)
