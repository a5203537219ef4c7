"""Warn at start-up about `RAGWAY_*` environment variables that no ragway service reads.

pydantic-settings ignores variables it does not know, so a misspelled setting
(`RAGWAY_MODEL_MAX_NUM_SEQ`) silently leaves the default in place. Every service runs this check
against the settings of *all* services — one environment usually feeds the whole stack, so a
variable that is valid for any service is never reported — and names the closest valid variable.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Iterable, Mapping

from pydantic_settings import BaseSettings

PREFIX = "RAGWAY_"

# Variables ragway's own tools read outside the services' settings: the CLI
# (`ragway ingest`), compose and image builds (interpolated, not passed in), and the test suite.
OTHER_NAMES = frozenset(
    {
        "RAGWAY_URL",
        "RAGWAY_API_KEY",
        "RAGWAY_GATEWAY_PORT",
        "RAGWAY_MODELS_DIR",
        "RAGWAY_MODEL_GPUS",
        "RAGWAY_IMAGE_TAG",
        "RAGWAY_IMAGE_PREFIX",
        "RAGWAY_BASE_IMAGE",
        "RAGWAY_CHROMIUM",
        "RAGWAY_SOAK_SECONDS",
    }
)


def _services_settings() -> list[type[BaseSettings]]:
    # Imported here: core is below the services, and each import is only their settings module.
    from ragway.gateway.core.config import GatewaySettings
    from ragway.model.config import ModelSettings
    from ragway.retrieval.config import RetrievalSettings

    return [GatewaySettings, ModelSettings, RetrievalSettings]


def setting_names(classes: Iterable[type[BaseSettings]]) -> tuple[set[str], set[str]]:
    """The environment variables `classes` read, and those of them that take nested `__` parts."""
    names: set[str] = set()
    nested: set[str] = set()
    for cls in classes:
        prefix = str(cls.model_config.get("env_prefix", "")).upper()
        delimiter = cls.model_config.get("env_nested_delimiter")
        for field in cls.model_fields:
            name = prefix + field.upper()
            names.add(name)
            if delimiter:
                nested.add(name + str(delimiter).upper())
    return names, nested


def unknown_variables(
    environ: Mapping[str, str], classes: Iterable[type[BaseSettings]] | None = None
) -> list[tuple[str, str | None]]:
    """Each `RAGWAY_*` variable in `environ` that no service reads, with the closest one that
    some service does read (None when nothing is close)."""
    names, nested = setting_names(_services_settings() if classes is None else classes)
    known = names | OTHER_NAMES
    unknown = []
    for variable in sorted(environ):
        upper = variable.upper()  # pydantic-settings matches names case-insensitively
        if not upper.startswith(PREFIX) or upper in known or upper.startswith(tuple(nested)):
            continue
        close = difflib.get_close_matches(upper, sorted(known), n=1, cutoff=0.75)
        unknown.append((variable, close[0] if close else None))
    return unknown


def warn_unknown_variables(log: logging.Logger, environ: Mapping[str, str] | None = None) -> None:
    """Log one warning per `RAGWAY_*` variable that no service reads."""
    for variable, suggestion in unknown_variables(os.environ if environ is None else environ):
        hint = f"; did you mean {suggestion}?" if suggestion else ""
        log.warning("%s is not a ragway setting and is ignored%s", variable, hint)
