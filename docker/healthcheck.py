#!/usr/bin/env python3
"""Container health check for the ragway images: exit 0 when the service answers healthy.

    ragway-healthcheck grpc://127.0.0.1:50051          # grpc.health.v1 Check, overall status ("")
    ragway-healthcheck grpc://127.0.0.1:50051/ragway.v1.ModelService
    ragway-healthcheck http://127.0.0.1:8000/healthz   # any 2xx

Installed in every image as /usr/local/bin/ragway-healthcheck and used by the Dockerfiles'
HEALTHCHECK and docker-compose. Kubernetes does not need it: the chart uses native grpc/httpGet probes.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from urllib.parse import urlsplit

TIMEOUT_S = 4.0


def check_grpc(target: str, service: str) -> tuple[bool, str]:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_S
            )
        except grpc.RpcError as exc:
            return False, f"{exc.code().name}: {exc.details()}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, status


def check_http(url: str) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return 200 <= response.status < 300, f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return False, str(exc)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    url = urlsplit(argv[0])
    if url.scheme == "grpc":
        ok, detail = check_grpc(url.netloc, url.path.lstrip("/"))
    elif url.scheme in ("http", "https"):
        ok, detail = check_http(argv[0])
    else:
        print(
            f"unsupported target {argv[0]!r}; use grpc://HOST:PORT or http://HOST:PORT/PATH", file=sys.stderr
        )
        return 2
    print(f"{argv[0]}: {detail}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
