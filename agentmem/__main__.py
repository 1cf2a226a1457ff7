"""`python -m agentmem` runs the command line."""

from .cli import main

main()
