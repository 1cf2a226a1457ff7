"""Serving: loading the model, answering from it, following published versions, and `agentmem serve`'s engines and gateway."""
