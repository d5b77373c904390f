"""The one settings object of a worker-side process, read from the environment (DESIGN §5).

Built once in the entrypoint and passed down; nothing reads the environment at import time.
Invalid values raise :class:`ConfigError` with one line naming the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pirate_worker.contracts.connection import check_redis_url, redact_url
from pirate_worker.errors import ConfigError

ProviderName = Literal["anthropic", "claude", "openai", "ollama", "rules"]
DEFAULT_REDIS_URL = "redis://localhost:6379/0"


class Settings(BaseSettings):
    """Environment of worker, enqueue, status and demo (seed names honoured exactly)."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", env_ignore_empty=True)

    REDIS_URL: str = DEFAULT_REDIS_URL
    REDIS_POOL_SIZE: Annotated[int, Field(ge=1, le=10_000)] = 50
    REDIS_TTL_SECONDS: Annotated[int, Field(ge=60)] = 2_592_000
    WORKER_COUNT: Annotated[int, Field(ge=1, le=20)] = 1

    LLM_PROVIDER: ProviderName | None = None
    LLM_MODEL_NAME: str | None = None
    LLM_TEMPERATURE: Annotated[float, Field(ge=0.0, le=2.0)] = 0.2
    LLM_MAX_TOKENS: Annotated[int, Field(ge=1, le=200_000)] = 4096
    #: Provider answers tried per job (the first and its retries with validation feedback).
    LLM_MAX_ATTEMPTS: Annotated[int, Field(ge=1, le=10)] = 3
    #: Seconds one provider request may take (connect + answer) before it counts as transient.
    LLM_TIMEOUT_S: Annotated[float, Field(gt=0, le=3600)] = 120.0
    #: A rate limit asking to wait at most this long is transient (the job is rescheduled); a
    #: longer wait is a quota block that pauses the llm workers until the provider's reset time.
    LLM_TRANSIENT_RETRY_MAX_S: Annotated[int, Field(ge=0, le=86_400)] = 60
    #: Provider calls in flight per llm worker process (each job in its own thread).
    LLM_CONCURRENCY: Annotated[int, Field(ge=1, le=256)] = 1
    #: Pace every llm worker to the provider's rate limits through the budget shared in Redis.
    LLM_RATE_PACING: bool = True
    ANTHROPIC_API_KEY: SecretStr | None = None
    ANTHROPIC_BASE_URL: str | None = None
    OPENAI_API_KEY: SecretStr | None = None
    OPENAI_BASE_URL: str | None = None
    OLLAMA_HOST: str | None = None

    CLAUDE_QUOTA_RETRY_DELAY: Annotated[int, Field(ge=1)] = 3600
    CLAUDE_QUOTA_MAX_DELAY: Annotated[int, Field(ge=1)] = 14_400
    CLAUDE_QUOTA_BACKOFF_MULTIPLIER: Annotated[float, Field(ge=1.0, le=10.0)] = 1.5
    AUTH_RETRY_DELAY: Annotated[int, Field(ge=1)] = 300

    OUTPUT_DIR: Path = Path("outputs")
    DATABASE_URL: str = "sqlite:///pirate-hsds.db"
    #: Workers bring the schema to the latest migration on first open (PostgreSQL: under an
    #: advisory lock); off, they refuse an outdated schema and ``db upgrade`` is the only way.
    DATABASE_AUTO_MIGRATE: bool = True
    #: Degrees (each axis) within which two locations of one organization are the same place.
    LOCATION_MATCH_TOLERANCE: Annotated[float, Field(ge=0.0, le=0.1)] = 0.0001
    GEOCODER: Literal["none", "nominatim"] = "none"
    GEOCODER_URL: str = "https://nominatim.openstreetmap.org"
    GEOCODER_USER_AGENT: str = "pirate-workers/0.1 (Pantry Pirate Radio reconciler)"
    GEOCODER_MIN_INTERVAL_SECONDS: Annotated[float, Field(ge=0.0, le=60.0)] = 1.0
    GEOCODER_CACHE_TTL_SECONDS: Annotated[int, Field(ge=60)] = 30 * 86_400
    GEOCODER_TIMEOUT_SECONDS: Annotated[float, Field(gt=0.0, le=120.0)] = 10.0
    CONTENT_STORE_ENABLED: bool = True
    CONTENT_STORE_BACKEND: Literal["redis", "sqlite"] = "redis"
    CONTENT_STORE_PATH: Path = Path("content-store.sqlite")

    #: The pod's name (downward API); worker names start with it so the operator maps workers to pods.
    POD_NAME: str | None = None
    HEALTH_PORT: Annotated[int, Field(ge=0, le=65_535)] = 8080
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("REDIS_URL")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        return check_redis_url(value)

    @field_validator("DATABASE_URL")
    @classmethod
    def _database_scheme(cls, value: str) -> str:
        # Imported here: only processes that use the database pay for SQLAlchemy.
        from pirate_worker.db.engine import normalize_url
        from pirate_worker.db.errors import DatabaseURLError

        if "://" not in value:
            raise ValueError("must be a URL such as sqlite:///hsds.db or postgresql://user@host/db")
        try:
            url = normalize_url(value)
        except DatabaseURLError as exc:
            raise ValueError(str(exc).removeprefix("invalid DATABASE_URL: ")) from None
        return url.render_as_string(hide_password=False)

    @field_validator("GEOCODER_URL")
    @classmethod
    def _geocoder_scheme(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("ANTHROPIC_BASE_URL", "OPENAI_BASE_URL")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @property
    def provider(self) -> str:
        """The provider in use: ``LLM_PROVIDER`` if set, else ``rules`` (offline, no key needed)."""
        return self.LLM_PROVIDER or "rules"

    @property
    def model_name(self) -> str:
        return self.LLM_MODEL_NAME or _DEFAULT_MODELS[self.provider]

    def secret_values(self) -> list[str]:
        """Every configured credential, for redaction checks."""
        secrets = (self.ANTHROPIC_API_KEY, self.OPENAI_API_KEY)
        return [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]


_DEFAULT_MODELS = {
    "anthropic": "claude-sonnet-4-20250514",
    "claude": "claude-sonnet-4-20250514",
    "openai": "gpt-4o-mini",
    "ollama": "llama3.1",
    "rules": "rules-v1",
}


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise :class:`ConfigError` naming the first bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line: the variable, the offending value (never for secrets) and what is wrong.

    URLs are shown with their password redacted: REDIS_URL and DATABASE_URL may carry one.
    """
    first = exc.errors()[0]
    name = ".".join(str(part) for part in first["loc"]) or "settings"
    message = first["msg"].removeprefix("Value error, ")
    value = first.get("input")
    if (
        "KEY" in name
        or "PASSWORD" in name
        or name == "DATABASE_URL"
        or not isinstance(value, str | int | float)
    ):
        return f"invalid environment variable {name}: {message}"
    shown = redact_url(value) if isinstance(value, str) and "://" in value else value
    return f"invalid environment variable {name}={shown!s}: {message}"
