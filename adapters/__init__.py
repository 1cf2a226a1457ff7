"""Integrations with other ecosystems, installed as `agentmem.adapters`: LangChain here; vLLM is the serving layer's
engine (agentmem/serving/engines.py), since `agentmem serve` runs it below the Memory that these adapters wrap."""
