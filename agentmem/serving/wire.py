"""What `agentmem serve` and its clients agree on: the model's name and the version headers (no torch here)."""

MODEL_ID = "agentmem"  # the one public model: the newest version with its adapter
VERSION_HEADER = "X-AgentMem-Version"  # the shared version that answered
MIN_VERSION_HEADER = "X-AgentMem-Min-Version"
USER_VERSION_HEADER = "X-AgentMem-User-Version"  # the version of the requesting user's memory (0: none)
MIN_USER_VERSION_HEADER = "X-AgentMem-Min-User-Version"
