"""The package is laid out the ordinary way: services/ is the source root and every import names its
file, so setuptools' discovery (not a hand-kept list) finds every package a wheel must carry."""

from __future__ import annotations

import importlib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]
SOURCE_ROOT = ROOT / "services"


def test_every_package_folder_is_discovered() -> None:
    discovered = set(find_packages(where=str(SOURCE_ROOT), include=["ragway*"]))
    folders = {
        ".".join(init.parent.relative_to(SOURCE_ROOT).parts)
        for init in SOURCE_ROOT.rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert folders == discovered
    assert {"ragway.gateway", "ragway.model", "ragway.retrieval", "ragway.v1"} <= discovered


def test_import_path_is_the_file_path() -> None:
    module = importlib.import_module("ragway.gateway.accounts.billing")
    assert (
        Path(module.__file__ or "").resolve()
        == SOURCE_ROOT / "ragway" / "gateway" / "accounts" / "billing.py"
    )
