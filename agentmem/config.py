"""Settings: AGENTMEM_* environment variables, each also a keyword of Memory.open and a CLI flag."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .memit import MemitConfig


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

    @field_validator("device")
    @classmethod
    def _device(cls, v):
        if v not in {"cpu", "cuda"}:
            raise ValueError(f"device must be 'cpu' or 'cuda', got {v!r}")
        return v

    @property
    def cache_dir(self) -> Path:
        return self.cache or self.home / "cache"
