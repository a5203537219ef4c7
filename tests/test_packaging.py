"""The package list in pyproject.toml names every package under services/ (package-dir mapping
turns off setuptools' discovery, so a forgotten one would be missing from a non-editable install)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    services = ROOT / "services"
    found = {
        ".".join(["ragway", *init.parent.relative_to(services).parts])
        for init in services.rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found == listed
