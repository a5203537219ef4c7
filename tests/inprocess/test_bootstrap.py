"""Gateway replicas starting at the same moment on a fresh PostgreSQL: one migrates (under an
advisory lock) and one makes the admin; the others find both in place instead of failing their
start on a duplicate admin (as one of compose's two gateways did). Four real processes, real
PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.inprocess.conftest import ADMIN_KEY
from tests.utils.db import fresh_postgres, rows

BOOTSTRAP = (
    "import asyncio; from ragway.gateway.app import bootstrap; from ragway.gateway.core.config import "
    "get_settings; asyncio.run(bootstrap(get_settings()))"
)


def test_replicas_bootstrapping_together_share_one_admin(tmp_path: Path) -> None:
    url = fresh_postgres("ragway_bootstrap")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RAGWAY_")},
        "RAGWAY_DATABASE_URL": url,
        "RAGWAY_ADMIN_KEY": ADMIN_KEY,
        "RAGWAY_DATA_DIR": str(tmp_path),
    }
    starts = [
        subprocess.Popen([sys.executable, "-c", BOOTSTRAP], env=env, stderr=subprocess.PIPE) for _ in range(4)
    ]
    failures = [p.stderr.read().decode()[-2000:] for p in starts if p.wait(120) != 0]  # type: ignore[union-attr]
    assert failures == []
    assert rows(url, "SELECT COUNT(*) FROM users WHERE name = 'admin'") == [(1,)]
    assert rows(url, "SELECT COUNT(*) FROM api_keys") == [(1,)]
