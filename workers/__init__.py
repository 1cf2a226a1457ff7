"""Celery application and tasks (wake edits, nightly sleep); installed as `agentmem.workers`."""
