"""`agentmem` and `python -m agentmem`: the command line, with the benchmarks mounted on it as `agentmem eval`."""

from .bench.cli import eval_app
from .cli import app, run

app.add_typer(eval_app, name="eval")


def main() -> None:
    run(app)


if __name__ == "__main__":
    main()
