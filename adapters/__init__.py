"""Integrations with other ecosystems (LangChain, vLLM); installed as `agentmem.adapters`."""
