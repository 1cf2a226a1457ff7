"""Benchmarks and evaluation suites (`agentmem eval`), and the fictional facts they and the tests use."""
