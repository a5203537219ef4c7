"""Gateway settings (env prefix RAGWAY_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragway.gateway.model_table import ModelTable, Price, default_table, load_model_table


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
    retrieval_write_timeout_seconds: float = Field(
        600.0, description="Deadline of one document upload (parse, chunk, embed, write)."
    )
    embed_timeout_seconds: float = Field(120.0, description="Deadline of one /v1/embeddings call.")
    model_info_ttl_seconds: float = Field(
        60.0, description="How long the model service's info (name, context length) is cached."
    )
    prices: dict[str, Price] = Field(
        default_factory=lambda: {"*": Price(prompt=0.5, completion=1.5)},
        description='Credits per 1M tokens by model; "*" is the default. JSON in RAGWAY_PRICES.',
    )
    models_file: Path | None = Field(
        None,
        description="YAML model table (names, aliases, replicas, prices, allow-lists, fallbacks); "
        "default: one model at model_service_addr, named by its model service.",
    )
    replica_backoff_seconds: float = Field(
        1.0, gt=0, description="How long a replica that failed a call is left out; doubles per failure."
    )
    replica_backoff_max_seconds: float = Field(30.0, gt=0, description="The longest a replica is left out.")
    max_body_bytes: int = Field(1_048_576, description="Largest JSON request body.")
    max_upload_bytes: int = Field(20 * 1_048_576, description="Largest uploaded document.")
    max_upload_files: int = Field(20, description="Most files in one upload.")
    max_file_bytes: int = Field(50 * 1_048_576, description="Largest file uploaded to /v1/files (413 above).")
    file_quota_bytes: int = Field(
        1_073_741_824, description="Bytes of /v1/files one user may keep stored (429 above)."
    )
    files_dir: Path | None = Field(None, description="Where /v1/files bytes live; default data_dir/files.")
    ingest_batch_files: int = Field(
        16, ge=1, description="Vector store files the ingestion worker sends in one retrieval upsert."
    )
    ingest_concurrency: int = Field(
        2, ge=1, description="Groups of vector store files the ingestion worker writes at once."
    )
    ingest_poll_seconds: float = Field(
        1.0, gt=0, description="How often the ingestion worker looks for in_progress files in SQL."
    )
    ingest_max_attempts: int = Field(
        5, ge=1, description="Tries per vector store file while the retrieval service is unavailable."
    )
    default_max_tokens: int = Field(512, description="max_tokens when a request gives none.")
    cors_origins: list[str] = Field(default_factory=lambda: ["*"])
    frontend_dir: Path | None = Field(None, description="Static chat UI; default: the repo's frontend/.")
    drain_seconds: float = 30.0
    log_level: str = "INFO"

    @field_validator("admin_key")
    @classmethod
    def _admin_key_shape(cls, key: SecretStr | None) -> SecretStr | None:
        # The rule of auth.py (rgw_ + 8 lookup characters + a secret part), checked at start-up so a
        # bad key is one line naming the setting, not a traceback from the first request.
        if key is not None and not (
            key.get_secret_value().startswith("rgw_") and len(key.get_secret_value()) >= 20
        ):
            raise ValueError("must start with rgw_ and hold at least 16 random characters")
        return key

    @field_validator("models_file", mode="before")
    @classmethod
    def _empty_models_file_is_none(cls, value: object) -> object:
        # docker compose passes RAGWAY_MODELS_FILE= (empty) when .env leaves it unset.
        return None if value == "" else value

    @field_validator("models_file")
    @classmethod
    def _models_file_is_valid(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        # Read at start-up, so a bad file is one line naming its field, not a traceback later.
        if path is not None:
            load_model_table(path, info.data.get("prices"))
        return path

    def model_table(self) -> ModelTable:
        """The models this gateway serves: the models file, or the one model service."""
        if self.models_file is None:
            return default_table(self.model_service_addr)
        return load_model_table(self.models_file, self.prices)

    def sqlalchemy_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite+aiosqlite:///{(self.data_dir / 'ragway.db').resolve()}"

    def file_storage_dir(self) -> Path:
        return self.files_dir or self.data_dir / "files"

    def price(self, model: str) -> Price:
        return self.prices.get(model) or self.prices.get("*") or Price()


def get_settings() -> GatewaySettings:
    return GatewaySettings()
