"""Gateway settings (env prefix RAGWAY_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragway.gateway.catalog.model_table import ModelTable, Price, default_table, load_model_table


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAGWAY_", extra="ignore", env_nested_delimiter="__")

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Gateway worker processes on one port (one per core relays the most tokens); "
        "more than one needs RAGWAY_REDIS_URL, so rate limits are counted across them.",
    )
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
    routing: Literal["cache", "least_busy"] = Field(
        "cache",
        description="How a generation picks a model replica: cache = by its routing key (prompt_cache_key, "
        "conversation, leading turns) with bounded load, so prompts land where their prefix is cached; "
        "least_busy = the replica with the fewest calls in flight.",
    )
    dns_refresh_seconds: float = Field(
        5.0,
        gt=0,
        description="How often a dns: replica address (a headless Service) is resolved again to find "
        "the pods that came and went; each address it resolves to is a replica of its own.",
    )
    max_body_bytes: int = Field(1_048_576, description="Largest JSON request body.")
    max_upload_bytes: int = Field(20 * 1_048_576, description="Largest uploaded document.")
    max_upload_files: int = Field(20, description="Most files in one upload.")
    max_file_bytes: int = Field(50 * 1_048_576, description="Largest file uploaded to /v1/files (413 above).")
    file_quota_bytes: int = Field(
        1_073_741_824, description="Bytes of /v1/files one user may keep stored (429 above)."
    )
    file_store: Literal["auto", "local", "database"] = Field(
        "auto",
        description="Where /v1/files bytes live: local (files_dir, one gateway), database (shared by "
        "every gateway replica, outlives pods); auto: database unless the database is SQLite.",
    )
    files_dir: Path | None = Field(
        None, description="Where local /v1/files bytes live; default data_dir/files."
    )
    ingest_batch_files: int = Field(
        16, ge=1, description="Vector store files the ingestion worker sends in one retrieval upsert."
    )
    ingest_concurrency: int = Field(
        2, ge=1, description="Groups of vector store files the ingestion worker writes at once."
    )
    ingest_poll_seconds: float = Field(
        1.0, gt=0, description="How often the ingestion worker looks for in_progress files in SQL."
    )
    ingest_lease_seconds: float = Field(
        60.0,
        gt=0,
        description="How long a gateway's ingestion worker holds the files it writes (renewed while it "
        "writes); a dead worker's files are taken over by another gateway after it.",
    )
    ingest_max_attempts: int = Field(
        5, ge=1, description="Tries per vector store file while the retrieval service is unavailable."
    )
    orphan_reservation_seconds: float | None = Field(
        None,
        gt=0,
        description="A reservation no request settled after this long (its gateway died, or the "
        "database was down when it ended) is settled as a failed request costing nothing; default: "
        "the longest a request may run (model, write and embed deadlines) plus the drain, plus a minute.",
    )
    default_max_tokens: int = Field(512, description="max_tokens when a request gives none.")
    rerank_model: str = Field(
        "",
        description='The LLM reranker (ranker "llm", /v1/rerank, /v1/score): the model of the model table '
        "that scores passages; empty: the first model the caller may use.",
    )
    rerank_candidates: int = Field(
        20,
        ge=1,
        le=100,
        description="ranker llm: first-stage hits the model rescores when a request gives no count.",
    )
    rerank_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="ranker llm: the time budget of one rerank; a search past it keeps the first-stage "
        "order (a request may give a shorter or longer budget_ms).",
    )
    rerank_auto: Literal["never", "gpu", "always"] = Field(
        "never",
        description='ranker "auto" where the retrieval service has no cross-encoder: never the LLM '
        "(default: the bundled model reranks worse than hybrid search, README), the LLM when the "
        'scoring model runs on GPUs ("gpu": for a model that ranks well, where scoring 20 candidates '
        'takes milliseconds, not seconds), or on every search ("always").',
    )
    rerank_passage_tokens: int = Field(
        128, ge=1, description="LLM reranker: tokens of each passage the model reads (its head)."
    )
    rerank_max_documents: int = Field(
        100, ge=1, le=1000, description="/v1/rerank and /v1/score: most documents one request may rank."
    )
    cors_origins: list[str] = Field(default_factory=lambda: ["*"])
    frontend_dir: Path | None = Field(None, description="Static chat UI; default: the repo's frontend/.")
    drain_seconds: float = 30.0
    log_level: str = "INFO"

    @field_validator("admin_key")
    @classmethod
    def _admin_key_shape(cls, key: SecretStr | None) -> SecretStr | None:
        # The rule of accounts/auth.py (rgw_ + 8 lookup characters + a secret part), checked at start-up so a
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

    def orphan_after(self) -> float:
        """Seconds after which an unsettled reservation is an orphan (see the setting)."""
        if self.orphan_reservation_seconds is not None:
            return self.orphan_reservation_seconds
        longest = max(
            self.model_timeout_seconds, self.retrieval_write_timeout_seconds, self.embed_timeout_seconds
        )
        return longest + self.drain_seconds + 60

    def file_storage_dir(self) -> Path:
        return self.files_dir or self.data_dir / "files"

    def price(self, model: str) -> Price:
        return self.prices.get(model) or self.prices.get("*") or Price()


def get_settings() -> GatewaySettings:
    return GatewaySettings()
