"""Gateway settings (env prefix RAGWAY_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Price(BaseModel):
    """Credits per million tokens."""

    prompt: float = 0.0
    completion: float = 0.0


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAGWAY_", extra="ignore", env_nested_delimiter="__")

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Field(
        Path(".ragway"), description="Holds the SQLite database and the generated admin key."
    )
    database_url: SecretStr | None = Field(None, description="SQLAlchemy URL; default sqlite in data_dir.")
    redis_url: SecretStr | None = Field(None, description="Share rate limits across gateway replicas.")
    admin_key: SecretStr | None = Field(None, description="Bootstrap admin API key (created on start).")
    admin_credits: float = Field(1000.0, description="Credits the bootstrap admin user starts with.")
    model_service_addr: str = "127.0.0.1:50051"
    retrieval_service_addr: str = "127.0.0.1:50052"
    model_timeout_seconds: float = Field(300.0, description="Deadline of one generation call.")
    rpc_timeout_seconds: float = Field(10.0, description="Deadline of non-generating gRPC calls.")
    prices: dict[str, Price] = Field(
        default_factory=lambda: {"*": Price(prompt=0.5, completion=1.5)},
        description='Credits per 1M tokens by model; "*" is the default. JSON in RAGWAY_PRICES.',
    )
    max_body_bytes: int = Field(1_048_576, description="Largest JSON request body.")
    max_upload_bytes: int = Field(20 * 1_048_576, description="Largest uploaded document.")
    max_upload_files: int = Field(20, description="Most files in one upload.")
    default_max_tokens: int = Field(512, description="max_tokens when a request gives none.")
    cors_origins: list[str] = Field(default_factory=lambda: ["*"])
    frontend_dir: Path | None = Field(None, description="Static chat UI; default: the repo's frontend/.")
    drain_seconds: float = 30.0
    log_level: str = "INFO"

    def sqlalchemy_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite+aiosqlite:///{(self.data_dir / 'ragway.db').resolve()}"

    def price(self, model: str) -> Price:
        return self.prices.get(model) or self.prices.get("*") or Price()


def get_settings() -> GatewaySettings:
    return GatewaySettings()
