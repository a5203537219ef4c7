"""The model table: which models the gateway serves, under which names, where, at what price, to whom.

Read from the YAML file `RAGWAY_MODELS_FILE`; without one the table is a single model at
`RAGWAY_MODEL_SERVICE_ADDR`, named by what that model service reports (GetModelInfo), so a plain
`ragway up` needs no file. A bad file stops the gateway at start-up with one line naming the field.

    models:
      - name: small                     # what clients pass as "model"
        aliases: [gpt-4o-mini]          # other names for it
        replicas: ["10.0.0.5:50051", "dns:///small-headless:50051"]
        prices: {prompt_per_1k: 0.0005, completion_per_1k: 0.0015}   # credits per 1,000 tokens
        allow: [usr_..., key_...]       # optional: only these user or key ids may use it
        fallbacks: [large]              # optional: tried in order when every replica is overloaded
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class Price(BaseModel):
    """Credits per million tokens (micro-credits per token): the unit billing counts in."""

    prompt: float = 0.0
    completion: float = 0.0
    # Prompt tokens the engine reused from its prefix cache (OpenAI bills them at a discount);
    # None: the prompt price.
    cached_prompt: float | None = None


class ModelTableError(ValueError):
    """The models file cannot be used; the message names the file and the field."""


class Prices(BaseModel):
    """Credits per 1,000 tokens (RAGWAY_PRICES counts per million; the names say which is which)."""

    model_config = ConfigDict(extra="forbid")

    prompt_per_1k: float = Field(ge=0, description="Credits per 1,000 prompt tokens.")
    completion_per_1k: float = Field(ge=0, description="Credits per 1,000 completion tokens.")
    cached_prompt_per_1k: float | None = Field(
        None,
        ge=0,
        description="Credits per 1,000 prompt tokens served from the engine's prefix cache; "
        "default: prompt_per_1k.",
    )

    def per_million(self) -> Price:
        """The price in billing's unit (credits per million tokens, i.e. micro-credits per token)."""
        # Rounded so that 0.0005 * 1000 stays 0.5 and a ceil() in billing adds no phantom micro-credit.
        cached = self.cached_prompt_per_1k
        return Price(
            prompt=round(self.prompt_per_1k * 1000, 9),
            completion=round(self.completion_per_1k * 1000, 9),
            cached_prompt=None if cached is None else round(cached * 1000, 9),
        )


class ModelEntry(BaseModel):
    """One served model and its replicas."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="Served name; may be left out only when the table has one model (then the "
        "model service's own name is used).",
    )
    aliases: list[str] = Field(default_factory=list, description="Other names clients may pass.")
    replicas: list[str] = Field(min_length=1, description="Model-service addresses (host:port, dns:///...).")
    prices: Prices | None = Field(None, description="Default: RAGWAY_PRICES by name, then its '*'.")
    allow: list[str] | None = Field(None, description="User or key ids that may use it; default: everyone.")
    fallbacks: list[str] = Field(
        default_factory=list, description="Models tried, in order, when every replica is overloaded."
    )


class ModelTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[ModelEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _names_are_unique_and_fallbacks_known(self) -> ModelTable:
        if len(self.models) > 1 and any(m.name is None for m in self.models):
            raise ValueError("every model needs a name when the table lists more than one")
        seen: set[str] = set()
        for entry in self.models:
            for name in [entry.name, *entry.aliases]:
                if name is None:
                    continue
                if name in seen:
                    raise ValueError(
                        f"the name {name!r} is given twice (names and aliases are one namespace)"
                    )
                seen.add(name)
        names = {m.name for m in self.models}
        for entry in self.models:
            for fallback in entry.fallbacks:
                if fallback not in names or fallback == entry.name:
                    raise ValueError(
                        f"model {entry.name!r}: fallback {fallback!r} is not another model of the table"
                    )
        return self


def default_table(address: str) -> ModelTable:
    """One model at `address`, named by its model service: what the gateway serves without a file."""
    return ModelTable(models=[ModelEntry(replicas=[address])])


def _location(loc: tuple[int | str, ...]) -> str:
    """pydantic's error location as a person writes it: models[1].replicas."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "(top level)"


def parse_model_table(data: Any, source: str, prices: dict[str, Price] | None = None) -> ModelTable:
    """Validate a loaded YAML document; ModelTableError with one line naming the field otherwise.

    `prices` (RAGWAY_PRICES) is checked against the table so each model's price has one source.
    """
    try:
        table = ModelTable.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ModelTableError(f"{source}: {_location(first['loc'])}: {message}") from None
    for index, entry in enumerate(table.models):
        if entry.prices is not None and entry.name in (prices or {}):
            raise ModelTableError(
                f"{source}: models[{index}].prices: {entry.name!r} is priced in RAGWAY_PRICES too; "
                "give its price in one place"
            )
    return table


def load_model_table(path: Path, prices: dict[str, Price] | None = None) -> ModelTable:
    """The table in the YAML file at `path`."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ModelTableError(f"{path}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ModelTableError(f"{path}: not YAML: {str(exc).splitlines()[0]}") from None
    return parse_model_table(data, str(path), prices)
