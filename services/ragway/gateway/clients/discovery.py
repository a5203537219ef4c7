"""Replicas found in DNS: every address a `dns:` name resolves to is a replica of its own.

A Kubernetes headless Service's name resolves to one A record per ready pod. gRPC's own `dns:///`
target would spread calls over those pods inside one channel, but then the gateway sees one
replica: failover before the first token has nowhere else to go, and one pod reporting NOT_SERVING
marks the whole model down. So the gateway resolves the name itself, keeps one channel (and health
watch, load count and backoff) per address, and resolves again every few seconds to add the pods
that came and drop the ones that left.

Addresses follow gRPC's naming: `dns:[//server[:port]/]host[:port]`. With a server the name is
asked of that DNS server (as tests and split-horizon setups need); without one, of the system
resolver (/etc/hosts, resolv.conf search domains, Docker's embedded DNS).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver

log = logging.getLogger(__name__)

DEFAULT_PORT = 50051  # the model service's port, when the address names none
DNS_PORT = 53


def _host_port(text: str, default: int) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]` or `[v6]:port`."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default
    host, colon, port = text.rpartition(":")
    if not colon:
        return text, default
    return host, int(port)


def _address(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@dataclass(frozen=True)
class DnsTarget:
    """A name whose every address is a replica."""

    host: str
    port: int
    server: tuple[str, int] | None = None  # the DNS server to ask; None: the system resolver

    @classmethod
    def parse(cls, address: str) -> DnsTarget | None:
        """The target of a `dns:` address; None for a plain `host:port` (one replica)."""
        if not address.startswith("dns:"):
            return None
        rest = address[len("dns:") :]
        server: tuple[str, int] | None = None
        if rest.startswith("//"):
            authority, slash, rest = rest[2:].partition("/")
            if not slash:
                raise ValueError(f"{address!r}: expected dns:[//server/]host[:port]")
            server = _host_port(authority, DNS_PORT) if authority else None
        host, port = _host_port(rest, DEFAULT_PORT)
        if not host:
            raise ValueError(f"{address!r} names no host")
        return cls(host, port, server)

    def __str__(self) -> str:
        server = f"{self.server[0]}:{self.server[1]}" if self.server else ""
        return f"dns://{server}/{self.host}:{self.port}"

    async def resolve(self, timeout: float = 2.0) -> list[str] | None:
        """Every `ip:port` the name has now, sorted; [] when the name has none (a Service with no
        ready pod); None when the lookup itself failed, so the caller keeps the replicas it has."""
        try:
            ipaddress.ip_address(self.host)
            return [_address(self.host, self.port)]
        except ValueError:
            pass
        try:
            ips = await asyncio.wait_for(self._lookup(), timeout)
        except (TimeoutError, OSError, dns.exception.DNSException) as exc:
            log.warning("resolving %s failed: %s; keeping the replicas known so far", self, exc)
            return None
        return sorted({_address(ip, self.port) for ip in ips})

    async def _lookup(self) -> list[str]:
        if self.server is None:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    self.host, self.port, type=socket.SOCK_STREAM
                )
            except socket.gaierror as exc:
                if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
                    return []  # the name has no address: no replica
                raise
            return [str(info[4][0]) for info in infos]
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [self.server[0]]
        resolver.port = self.server[1]
        ips: list[str] = []
        for kind in ("A", "AAAA"):
            try:
                answer = await resolver.resolve(self.host, kind)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            ips.extend(record.to_text() for record in answer)
        return ips
