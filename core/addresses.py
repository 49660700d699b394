"""Client addresses: trusted proxies given as addresses or networks, and the subject a per-client
limit counts (an IPv6 client's /64, since one subscriber or host usually holds a whole /64)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(value: str) -> Address | None:
    """An IP address (an IPv4-mapped IPv6 address as its IPv4 one), or None."""
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class AddressSet:
    """Addresses and networks (``10.0.0.0/8``, ``::1``): does one of them hold an address?"""

    def __init__(self, entries: Iterable[str]) -> None:
        self.networks = [ipaddress.ip_network(entry, strict=False) for entry in entries]

    def __contains__(self, value: object) -> bool:
        address = parse_address(value) if isinstance(value, str) else None
        return address is not None and any(address in network for network in self.networks)


def client_subject(client: str) -> str:
    """What per-client limits count: the IPv4 address, or the /64 an IPv6 address is in.

    A subscriber line, a host or a VM usually gets a whole /64: counted per /128, one machine would
    have 2**64 fresh budgets. The audit keeps the full address.
    """
    address = parse_address(client)
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address) if address is not None else client


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback address: traffic to it never leaves the machine."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    address = parse_address(host)
    return address is not None and address.is_loopback
