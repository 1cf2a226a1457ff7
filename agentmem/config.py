"""Settings: AGENTMEM_* environment variables, each also a keyword of Memory.open and a CLI flag."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .consolidate import SleepConfig
from .memit import MemitConfig
from .policy import PolicyConfig


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTMEM_", extra="forbid")

    home: Path = Field(default_factory=lambda: Path.home() / ".agentmem")
    model: str | None = None  # a local HF checkpoint folder; None: the bundled SmolLM2
    redis_url: str | None = None
    server_url: str | None = None
    device: str = "cpu"
    cache: Path | None = None  # converted models and covariances; default: HOME/cache
    cov_samples: int = 256
    cov_text: Path | None = None
    memit: MemitConfig = Field(default_factory=MemitConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    sleep: SleepConfig = Field(default_factory=SleepConfig)
    # the hook: "rules" (embedded) or an OpenAI-compatible model at extractor_url
    extractor: str = Field("rules", pattern="^(rules|llm)$")
    extractor_url: str | None = None
    extractor_model: str | None = None
    # wake batches: up to this many facts, waiting at most this long for more
    batch_max_facts: int = Field(16, ge=1, le=256)
    batch_max_wait_ms: int = Field(200, ge=0, le=60_000)
    # writer lock time to live: a dead worker blocks the others at most this long
    lock_ttl_ms: int = Field(30_000, ge=1_000)
    # the nightly sleep, as a crontab line (minute hour day-of-month month day-of-week)
    sleep_cron: str = "0 3 * * *"

    @field_validator("device")
    @classmethod
    def _device(cls, v):
        if v not in {"cpu", "cuda"}:
            raise ValueError(f"device must be 'cpu' or 'cuda', got {v!r}")
        return v

    @field_validator("extractor_url", "server_url")
    @classmethod
    def _url(cls, v):
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {v!r}")
        return v

    @field_validator("sleep_cron")
    @classmethod
    def _cron(cls, v):
        if len(v.split()) != 5:
            raise ValueError(f"sleep_cron must have 5 fields (minute hour day month weekday), got {v!r}")
        return v

    @property
    def cache_dir(self) -> Path:
        return self.cache or self.home / "cache"
