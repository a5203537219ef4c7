"""A retrieval service with two real embedders, for the tests of embedding models by name.

Only one embedding model ships as a package (all-MiniLM-L6-v2), so the second is a copy of it in a
folder of another name: the service loads it as a model of its own (RAGWAY_RETRIEVAL_EXTRA_EMBEDDERS)
and names it by its folder. Its vectors equal the first's, which is exactly what makes the
name-based refusal worth having: nothing else would tell them apart.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ragway.retrieval.embedder import bundled_model_dir
from tests.utils.processes import Service, free_port, grpc_serving, start, wait_until

SECOND = "minilm-second"


def second_embedder(parent: Path) -> Path:
    """A copy of the bundled embedder, in `parent`/SECOND."""
    folder = parent / SECOND
    shutil.copytree(bundled_model_dir(), folder)
    return folder


def start_retrieval(name: str, data_dir: Path, extra: list[Path]) -> tuple[Service, str]:
    """A real retrieval service on a free port serving the default embedder plus `extra`."""
    port = free_port()
    service = start(
        name,
        "retrieval",
        {
            "RAGWAY_DATA_DIR": str(data_dir),
            "RAGWAY_RETRIEVAL_PORT": str(port),
            "RAGWAY_RETRIEVAL_METRICS_PORT": "0",
            "RAGWAY_RETRIEVAL_EXTRA_EMBEDDERS": json.dumps([str(p) for p in extra]),
        },
    )
    address = f"127.0.0.1:{port}"
    wait_until(service, lambda: grpc_serving(address), 300)
    return service, address
