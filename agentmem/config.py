"""Settings: AGENTMEM_* environment variables, each also a keyword of Memory.open and a CLI flag."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .edit.config import MemitConfig
from .facts.policy import PolicyConfig
from .serving.auth import OPERATOR
from .serving.limits import Limits
from .sleep.config import SleepConfig
from .storage.layout import Layout


# API user ids: what a token may be bound to, and what a request may name
USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}")
ADMIN = OPERATOR  # a token bound to this may act for any user
MIN_TOKEN_LENGTH = 16
# a crontab line's fields in cron's order, named as celery's crontab takes them (its positional order differs)
CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


def cron_fields(line: str) -> dict[str, str]:
    """A crontab line's five fields by name, the keywords of celery's crontab."""
    fields = line.split()
    if len(fields) != len(CRON_FIELDS):
        raise ValueError(f"sleep_cron must have 5 fields (minute hour day-of-month month day-of-week), got {line!r}")
    return dict(zip(CRON_FIELDS, fields))


class Settings(BaseSettings):
    # inputs stay out of error messages: api_tokens holds secrets
    model_config = SettingsConfigDict(env_prefix="AGENTMEM_", extra="forbid", hide_input_in_errors=True)

    home: Path = Field(default_factory=lambda: Path.home() / ".agentmem")
    model: str | None = None  # a local HF checkpoint folder; None: the bundled SmolLM2
    redis_url: str | None = None
    # the ledger in this database (postgresql+psycopg://USER@HOST:PORT/DB), one per home; None: HOME/ledger.sqlite
    database_url: str | None = None
    server_url: str | None = None
    # the bearer token Memory sends to server_url: an operator's ("*" in AGENTMEM_API_TOKENS) to answer as any user
    server_token: str | None = None
    device: str = "cpu"
    cache: Path | None = None  # converted models and covariances; default: HOME/cache
    cov_samples: int = 256
    cov_text: Path | None = None
    memit: MemitConfig = Field(default_factory=MemitConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    sleep: SleepConfig = Field(default_factory=SleepConfig)
    # the hook: "rules" (embedded), "llm" (an OpenAI-compatible model with structured outputs at extractor_url,
    # by default this home's own `agentmem serve` at server_url, else 127.0.0.1:8000, model "agentmem"), or
    # "both" (the rules' facts, and the model's where the rules have none; the rules alone while it is down)
    extractor: str = Field("rules", pattern="^(rules|llm|both)$")
    extractor_url: str | None = None
    extractor_model: str | None = None
    # the extractor's bearer token (default: server_token when it asks this home's own server)
    extractor_token: str | None = None
    extractor_timeout_s: float = Field(30.0, gt=0)
    # a user's adapter is at most this rank (vLLM's --max-lora-rank: 8, 16, 32, 64, 128, 256 or 512); past it
    # the user's edits are compacted, exactly while their true rank allows, else truncated
    user_max_rank: int = Field(64, ge=8, le=512)
    # what one user may hand the wake editor: facts accepted in any rolling hour, and facts held or waiting at once.
    # Past either, observe and remember_later refuse the whole call (the API answers 429); 0: no limit.
    user_facts_per_hour: int = Field(500, ge=0)
    user_max_facts: int = Field(10_000, ge=0)
    # writer shards: each has its own stream and lock, so this many worker processes edit at once (users are
    # spread over them by id; the shared scope is shard 0's). Every process of a home must agree on it.
    writer_shards: int = Field(1, ge=1, le=64)
    # wake batches: up to this many facts, waiting at most this long for more. Facts that come while
    # an edit runs (seconds) join the next batch anyway, so the wait only delays a lone fact.
    batch_max_facts: int = Field(16, ge=1, le=256)
    batch_max_wait_ms: int = Field(50, ge=0, le=60_000)
    # writer lock time to live: a dead worker blocks the others at most this long
    lock_ttl_ms: int = Field(30_000, ge=1_000)
    # the nightly sleep, as a crontab line (minute hour day-of-month month day-of-week), in UTC
    sleep_cron: str = "0 3 * * *"
    # Redis hands an unacknowledged task to another worker after this long: above the longest night
    visibility_timeout_s: int = Field(6 * 3600, ge=60)
    # `agentmem api`: bearer tokens, each bound to one user id, or to "*" (an operator, may act for any user)
    api_tokens: dict[str, str] = Field(default_factory=dict)
    # the same as a JSON file (a Docker secret, say): tokens stay out of the environment
    api_tokens_file: Path | None = None
    api_max_body_bytes: int = Field(1_000_000, ge=1_024)
    # `agentmem serve`: caps on one inference request (the gateway's defaults in serving/limits.py)
    serve_max_body_bytes: int = Field(Limits.max_body_bytes, ge=1_024)
    serve_max_tokens: int = Field(Limits.max_tokens, ge=1)
    serve_max_n: int = Field(Limits.max_n, ge=1)
    serve_max_logprobs: int = Field(Limits.max_logprobs, ge=0)
    serve_request_timeout_s: float = Field(Limits.request_timeout_s, gt=0)
    serve_user_requests_per_minute: int = Field(Limits.user_requests_per_minute, ge=0)
    # the memory API (`agentmem api`) to which `agentmem serve` hands each user's chat turn to be learned: any
    # OpenAI client then gets memory by pointing at the server alone (unset: the server only answers)
    serve_observe_url: str | None = None
    # services (api, worker, serve) log one JSON object per line with "json"
    log_format: Literal["text", "json"] = "text"

    @field_validator("device")
    @classmethod
    def _device(cls, v):
        if v not in {"cpu", "cuda"}:
            raise ValueError(f"device must be 'cpu' or 'cuda', got {v!r}")
        return v

    @field_validator("extractor_url", "server_url", "serve_observe_url")
    @classmethod
    def _url(cls, v):
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {v!r}")
        return v

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v):
        if v is None:
            return v
        try:
            backend = make_url(v).get_backend_name()
        except ArgumentError:
            raise ValueError("must be a database URL such as postgresql+psycopg://USER@HOST:5432/DB") from None
        if backend not in ("postgresql", "sqlite"):
            raise ValueError(f"the ledger runs on PostgreSQL or SQLite, not {backend!r}")
        return v

    @field_validator("sleep_cron")
    @classmethod
    def _cron(cls, v):
        # celery's parser: what it accepts is what beat runs
        from celery.schedules import ParseException, crontab

        fields = cron_fields(v)
        if fields["day_of_month"] != "*" and fields["day_of_week"] != "*":
            raise ValueError(f"sleep_cron {v!r} restricts both the day of the month and the day of the week: "
                             "cron runs on either, Celery's beat only on days that are both; restrict one")
        for name, spec in fields.items():
            try:
                crontab(**{name: spec})
            except (ValueError, ParseException) as e:
                raise ValueError(f"sleep_cron {v!r}: bad {name} {spec!r} ({e})") from None
        try:
            crontab(**fields)
        except ValueError as e:  # a date that never comes, e.g. the 31st of February
            raise ValueError(f"sleep_cron {v!r}: {e}") from None
        return v

    @field_validator("api_tokens")
    @classmethod
    def _tokens(cls, v):
        for token, user in v.items():
            # a short token can be guessed; the length is the only check a config can make
            if len(token) < MIN_TOKEN_LENGTH:
                raise ValueError(f"api_tokens: a token for {user!r} has {len(token)} characters; "
                                 f"at least {MIN_TOKEN_LENGTH} are needed")
            if user != ADMIN and not USER_ID.fullmatch(user):
                raise ValueError(f"api_tokens: user id {user!r} must match {USER_ID.pattern} (or be {ADMIN!r})")
        return v

    @model_validator(mode="after")
    def _tokens_from_file(self):
        if self.api_tokens_file is None:
            return self
        if self.api_tokens:
            raise ValueError("set api_tokens or api_tokens_file, not both")
        try:
            tokens = json.loads(Path(self.api_tokens_file).read_text())
        except OSError as e:
            raise ValueError(f"api_tokens_file {self.api_tokens_file} cannot be read: {e.strerror}") from None
        except ValueError:
            raise ValueError(f"api_tokens_file {self.api_tokens_file} is not JSON") from None
        if not isinstance(tokens, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tokens.items()):
            raise ValueError(f"api_tokens_file {self.api_tokens_file} must hold a JSON object of token -> user id")
        self.api_tokens = self._tokens(tokens)
        return self

    @property
    def cache_dir(self) -> Path:
        return self.cache or Layout(self.home).cache


def settings_error(e: ValidationError) -> str:
    """Refused settings on one line, each named by its AGENTMEM_* variable."""
    said = []
    for err in e.errors():
        field, *inside = err["loc"]
        where = f"AGENTMEM_{str(field).upper()}" + (f" ({'.'.join(map(str, inside))})" if inside else "")
        said.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(said)
