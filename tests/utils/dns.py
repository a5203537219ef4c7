"""A real DNS server for tests (dnslib): one name, whose A records a test changes as it goes, the
way a Kubernetes headless Service's name follows its ready pods."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from dnslib import QTYPE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSServer

from tests.utils.processes import free_port


@dataclass
class Records(BaseResolver):  # type: ignore[misc]
    """Answers `name` with `addresses` (NXDOMAIN when there are none, as for a Service with no ready
    pod); every other name is NXDOMAIN too. TTL 0: nothing caches an answer across a change."""

    name: str
    addresses: list[str] = field(default_factory=list)

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        qname = str(request.q.qname).rstrip(".")
        if qname != self.name or not self.addresses:
            reply.header.rcode = 3  # NXDOMAIN
            return reply
        if request.q.qtype in (QTYPE.A, QTYPE.ANY):
            for address in self.addresses:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=0))
        return reply


@contextmanager
def dns_server(name: str, addresses: list[str]) -> Iterator[tuple[Records, int]]:
    """A UDP DNS server on 127.0.0.1 answering `name`; yields its records (change them freely) and port."""
    records = Records(name, list(addresses))
    port = free_port()
    server = DNSServer(records, port=port, address="127.0.0.1")
    server.start_thread()
    try:
        yield records, port
    finally:
        server.stop()
