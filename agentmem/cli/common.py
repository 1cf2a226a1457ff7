"""What every command shares: the common options, one-line errors, JSON or text output, opening a Memory."""

from __future__ import annotations

import json

import typer

HomeOpt = typer.Option(None, "--home", envvar="AGENTMEM_HOME", help="memory folder (default ~/.agentmem)")
ModelOpt = typer.Option(None, "--model", envvar="AGENTMEM_MODEL", help="local Hugging Face checkpoint folder")
JsonOpt = typer.Option(False, "--json", help="machine-readable output")
ServerOpt = typer.Option(None, "--server-url", envvar="AGENTMEM_SERVER_URL",
                         help="answer through this `agentmem serve` (default: in this process)")
RedisOpt = typer.Option(None, "--redis-url", envvar="AGENTMEM_REDIS_URL",
                        help="hand facts to the workers through this Redis (default: edit in this process)")
DeviceOpt = typer.Option(None, "--device", envvar="AGENTMEM_DEVICE", help="cpu or cuda (default: cpu)")


def fail(msg: str) -> None:
    typer.echo(f"agentmem: {msg}", err=True)
    raise typer.Exit(1)


def say(message: str) -> None:
    typer.echo(message, err=True)


def given(**options) -> dict:
    """The options given (a flag or its variable); the rest are left to Settings' defaults."""
    return {name: value for name, value in options.items() if value is not None}


def open_memory(read_only: bool = False, **options):
    """A Memory opened with the command's options: home, model, server_url, redis_url, device."""
    from ..memory import Memory  # loads torch: only the commands that need a model pay for it

    return Memory.open(progress=say, read_only=read_only, **given(**options))


def emit(obj, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str) if as_json else text)
