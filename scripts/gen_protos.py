"""Generate the Python gRPC stubs for proto/ragway/v1/*.proto into services/ragway/v1 (= ragway.v1).

One script shared by the Makefile, CI and the Dockerfiles; the output is git-ignored. It only
rewrites stubs older than their .proto, so it is cheap to run before every command.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "services" / "ragway" / "v1"


def main() -> int:
    protos = sorted((PROTO_DIR / "ragway" / "v1").glob("*.proto"))
    newest = max(p.stat().st_mtime for p in protos)
    stamp = OUT_DIR / ".generated"
    if stamp.exists() and stamp.stat().st_mtime >= newest and stamp.read_text() == str(len(protos)):
        return 0
    include = Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *[str(p) for p in protos],
        ]
        if protoc.main(args) != 0:
            print("protoc failed", file=sys.stderr)
            return 1
        shutil.rmtree(OUT_DIR, ignore_errors=True)
        shutil.copytree(Path(tmp) / "ragway" / "v1", OUT_DIR)
    (OUT_DIR / "__init__.py").write_text('"""Generated gRPC stubs (scripts/gen_protos.py); do not edit."""\n')
    stamp.write_text(str(len(protos)))
    print(f"generated stubs for {len(protos)} protos into {OUT_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
