"""In-process routing of the simulated names to the simulator, and a safety net against real connections.

While installed:

* ``socket.getaddrinfo`` answers names under ``.test`` by asking the simulator's own DNS server, and, for
  names served on 127.0.0.1, substitutes the simulator's listener ports for 443 and 80 (so
  ``https://mail.contoso.test/`` reaches ``127.0.0.1:<https port>``). IP literals and ``localhost`` resolve
  as usual; every other name fails as unresolvable (nothing ever goes to real DNS).
* ``socket.socket.connect`` records every TCP/UDP connect and refuses any peer that is not loopback (the
  simulated ``10.0.0.5`` / ``169.254.169.254`` are never really contacted, whatever the client does).
* exchangelib's autodiscover resolver (``Autodiscovery.DNS_RESOLVER_KWARGS/ATTRS``) and dnspython's default
  resolver point at the simulator's DNS server, so A and SRV lookups hit simulated data.

Everything is restored by ``uninstall()``. Works for plain exchangelib as well as for our guarded adapter.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.resolver

GAI_TIMEOUT = 10.0  # like glibc: 5 s per try, 2 tries


@dataclass(frozen=True)
class ConnectRecord:
    host: str
    port: int
    refused: bool


def is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def sim_resolver(dns_port: int, lifetime: float = GAI_TIMEOUT) -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = dns_port
    resolver.timeout = min(5.0, lifetime)
    resolver.lifetime = lifetime
    return resolver


class Routing:
    """Install/uninstall the patches described in the module docstring."""

    _install_lock = threading.Lock()

    def __init__(self, dns_port: int, port_for: Callable[[str, int], int]) -> None:
        self.dns_port = dns_port
        self._port_for = port_for
        self.connects: list[ConnectRecord] = []
        self._saved: dict[str, Any] = {}
        self.installed = False

    # ------------------------------------------------------------ patches

    def getaddrinfo(
        self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[Any]:
        real = self._saved["getaddrinfo"]
        if host is None:
            return list(real(host, port, family, type, proto, flags))
        name = host.decode() if isinstance(host, bytes) else str(host)
        try:
            return list(real(name, port, family, type, proto, flags | socket.AI_NUMERICHOST))
        except socket.gaierror:
            if flags & socket.AI_NUMERICHOST:
                # Honour the flag: a routing installed on top of this one (a second simulator in the same
                # process) asks this way, and must then resolve the name with its own DNS and ports.
                raise
        lname = name.lower().rstrip(".")
        if lname == "localhost":
            return list(real(name, port, family, type, proto, flags))
        if not lname.endswith(".test"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        address = self._resolve(lname)
        port_number = int(port) if port is not None else 0
        if is_loopback(address):
            port_number = self._port_for(lname, port_number)
        fam = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(fam, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port_number))]

    def _resolve(self, name: str) -> str:
        try:
            answer = sim_resolver(self.dns_port).resolve(name + ".", "A")
        except dns.resolver.LifetimeTimeout as e:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution") from e
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers) as e:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from e
        except dns.exception.DNSException as e:
            raise socket.gaierror(socket.EAI_FAIL, "Non-recoverable failure in name resolution") from e
        return str(next(iter(answer)))

    def _make_connect(self) -> Callable[..., Any]:
        real_connect = self._saved["connect"]
        routing = self

        def connect(sock: socket.socket, address: Any) -> Any:
            if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
                host, port = str(address[0]), int(address[1])
                refused = not is_loopback(host)
                routing.connects.append(ConnectRecord(host, port, refused))
                if refused:
                    raise ConnectionRefusedError(111, f"exchange simulator refuses non-loopback peer {host}")
            return real_connect(sock, address)

        return connect

    # ------------------------------------------------------------ install / uninstall

    def install(self) -> None:
        from exchangelib.autodiscover import Autodiscovery

        with self._install_lock:
            if self.installed:
                return
            self._saved = {
                "getaddrinfo": socket.getaddrinfo,
                "connect": socket.socket.connect,
                "kwargs": Autodiscovery.DNS_RESOLVER_KWARGS,
                "attrs": Autodiscovery.DNS_RESOLVER_ATTRS,
                "default_resolver": dns.resolver.default_resolver,
            }
            socket.getaddrinfo = self.getaddrinfo
            socket.socket.connect = self._make_connect()  # type: ignore[method-assign]
            Autodiscovery.DNS_RESOLVER_KWARGS = {"configure": False}
            Autodiscovery.DNS_RESOLVER_ATTRS = {
                **Autodiscovery.DNS_RESOLVER_ATTRS,
                "nameservers": ["127.0.0.1"],
                "port": self.dns_port,
            }
            dns.resolver.default_resolver = sim_resolver(self.dns_port)
            self.installed = True

    def uninstall(self) -> None:
        from exchangelib.autodiscover import Autodiscovery

        with self._install_lock:
            if not self.installed:
                return
            socket.getaddrinfo = self._saved["getaddrinfo"]
            socket.socket.connect = self._saved["connect"]  # type: ignore[method-assign]
            Autodiscovery.DNS_RESOLVER_KWARGS = self._saved["kwargs"]
            Autodiscovery.DNS_RESOLVER_ATTRS = self._saved["attrs"]
            dns.resolver.default_resolver = self._saved["default_resolver"]
            self.installed = False
