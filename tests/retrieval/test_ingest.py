"""`ragway ingest` on real folders (issue 17 item 6), through a real gateway and a real retrieval
service. The gateway gets no model service (collections do not need one), so no engine starts."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragway.ingest import ingest
from tests.conftest import Gateway, RetrievalService, start_gateway
from tests.utils.factories import Account, make_account
from tests.utils.processes import RAGWAY


@pytest.fixture(scope="module")
def gateway_without_model(
    retrieval_service: RetrievalService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    gw = start_gateway(
        "gateway-ingest", tmp_path_factory.mktemp("gateway-ingest"), "127.0.0.1:9", retrieval_service.address
    )
    yield gw
    gw.service.stop()


@pytest.fixture
def account(gateway_without_model: Gateway) -> Account:
    return make_account(gateway_without_model.url, gateway_without_model.admin_key)


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def document_ids(account: Account, collection: str) -> list[str]:
    with account.http() as http:
        return [d["id"] for d in http.get(f"/v1/collections/{collection}/documents").json()["data"]]


def test_ids_are_paths_and_unchanged_files_are_not_sent(account: Account, tmp_path: Path) -> None:
    folder = tmp_path / "site"
    write(folder, {
        "index.md": "# Home\n\nWelcome to the zorbix manual.",
        "guide/index.md": "# Guide\n\nThe zorbix guide explains flux settings.",
        "api/index.html": "<h1>API</h1><p>The zorbix API takes JSON.</p>",
        "notes.txt": "Plain notes about zorbix.",
    })  # fmt: skip
    first = ingest(account.base_url, account.key, "site", [folder])
    assert (first.files, first.written, first.uploads, first.failed) == (4, 4, 4, {})
    assert sorted(document_ids(account, "site")) == [
        "api/index.html",
        "guide/index.md",
        "index.md",
        "notes.txt",
    ]

    again = ingest(account.base_url, account.key, "site", [folder])
    assert (again.written, again.unchanged, again.uploads) == (0, 4, 0)

    write(folder, {"guide/index.md": "# Guide\n\nThe zorbix guide now covers warp settings."})
    changed = ingest(account.base_url, account.key, "site", [folder])
    assert (changed.written, changed.unchanged, changed.uploads) == (1, 3, 1)
    with account.http() as http:
        chunks = http.get("/v1/collections/site/documents/guide/index.md").json()["chunks"]
    assert "warp" in chunks[0]["text"]


def test_prune_deletes_only_this_folders_documents_whose_files_are_gone(
    account: Account, tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    write(folder, {"a.md": "# A\n\nAlpha.", "sub/b.md": "# B\n\nBeta.", "sub/c.md": "# C\n\nGamma."})
    ingest(account.base_url, account.key, "docs", [folder])
    with account.http() as http:
        other = http.post(
            "/v1/collections/docs/documents", json={"documents": [{"id": "manual", "text": "By hand."}]}
        )
        other.raise_for_status()
    (folder / "sub" / "b.md").unlink()
    kept = ingest(account.base_url, account.key, "docs", [folder])
    assert kept.pruned == 0 and "sub/b.md" in document_ids(account, "docs")
    pruned = ingest(account.base_url, account.key, "docs", [folder], prune=True)
    assert pruned.pruned == 1
    assert sorted(document_ids(account, "docs")) == ["a.md", "manual", "sub/c.md"]


def _ragway_ingest(gateway: Gateway, folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # As a person runs it beside a `ragway up` stack: its data folder (with admin.key) is at hand.
    (gateway.data_dir / "admin.key").write_text(gateway.admin_key + "\n")
    environ = {k: v for k, v in os.environ.items() if k != "RAGWAY_API_KEY"}
    return subprocess.run(
        [RAGWAY, "ingest", str(folder), "-c", "notes", "--url", gateway.url],
        env={**environ, "RAGWAY_DATA_DIR": str(gateway.data_dir), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_ragway_ingest_without_a_key_is_refused_and_writes_nowhere(
    gateway_without_model: Gateway, tmp_path: Path
) -> None:
    folder = tmp_path / "notes"
    write(folder, {"a.md": "# A\n\nAlpha notes."})
    result = _ragway_ingest(gateway_without_model, folder, {})
    assert result.returncode == 2
    assert "RAGWAY_API_KEY" in result.stderr and "--api-key" in result.stderr
    admin = Account("", "", gateway_without_model.admin_key, gateway_without_model.url)
    with admin.http() as http:
        assert http.get("/v1/collections/notes/documents").status_code == 404, "nothing in the admin's"


def test_ragway_ingest_writes_into_the_collection_of_the_keys_user(
    gateway_without_model: Gateway, account: Account, tmp_path: Path
) -> None:
    folder = tmp_path / "notes"
    write(folder, {"a.md": "# A\n\nAlpha notes."})
    result = _ragway_ingest(gateway_without_model, folder, {"RAGWAY_API_KEY": account.key})
    assert result.returncode == 0, result.stderr
    assert document_ids(account, "notes") == ["a.md"]
