"""A tiny authoritative DNS server (dnslib) on 127.0.0.1 for the simulated ``.test`` names.

Never forwards anything: unknown names get NXDOMAIN, names in a silent zone get no answer at all.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from dnslib import AAAA, QTYPE, RCODE, RR, SRV, A, DNSRecord  # type: ignore[import-untyped]


@dataclass(frozen=True)
class Zone:
    """What the server knows: A records, SRV records, silent zones."""

    a_records: dict[str, str]
    srv_records: dict[str, list[tuple[int, int, int, str]]]
    silent_zones: tuple[str, ...]

    def is_silent(self, name: str) -> bool:
        return any(name == z or name.endswith("." + z) for z in self.silent_zones)


class DNSServer:
    """UDP DNS server on 127.0.0.1:<free port>; ``queries`` records every question seen."""

    def __init__(self, zone: Zone, on_query: Callable[[str, str], None] | None = None) -> None:
        self.zone = zone
        self._on_query = on_query
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="exchange-sim-dns", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._sock], [], [], 0.1)
            if not ready:
                continue
            try:
                data, peer = self._sock.recvfrom(4096)
            except OSError:
                return
            reply = self.answer(data)
            if reply is not None:
                self._sock.sendto(reply, peer)

    def answer(self, data: bytes) -> bytes | None:
        """The packed reply to one query, or None to stay silent."""
        try:
            request = DNSRecord.parse(data)
        except Exception:  # noqa: BLE001 - garbage in, silence out
            return None
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        if self._on_query:
            self._on_query(qname, qtype)
        if self.zone.is_silent(qname):
            return None
        reply = request.reply()
        reply.header.aa = 1
        address = self.zone.a_records.get(qname)
        srv = self.zone.srv_records.get(qname)
        if address is None and srv is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif qtype in ("A", "ANY") and address and ":" not in address:
            reply.add_answer(RR(qname, QTYPE.A, rdata=A(address), ttl=60))
        elif qtype in ("AAAA", "ANY") and address and ":" in address:
            reply.add_answer(RR(qname, QTYPE.AAAA, rdata=AAAA(address), ttl=60))
        elif qtype in ("SRV", "ANY") and srv:
            for priority, weight, port, target in srv:
                reply.add_answer(
                    RR(qname, QTYPE.SRV, rdata=SRV(priority, weight, port, target + "."), ttl=60)
                )
        # else: the name exists but has no record of that type -> NOERROR, empty answer
        return bytes(reply.pack())
