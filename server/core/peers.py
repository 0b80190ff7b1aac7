"""Who is calling, as an address: the TCP peer, or the client a trusted proxy names.

Behind a load balancer or an API gateway every call arrives from the proxy's address,
so per-address brute-force limits, session records and audit events would all see one
client. With ``GENCHARGE_TRUSTED_PROXIES`` (the proxies' own addresses or CIDRs, e.g.
``10.0.5.12,10.0.5.13``; never a whole pod or VPC range, see docs/security.md)
the address of a call whose TCP peer is inside those networks is taken from the
``x-forwarded-for`` metadata instead: the right-most hop that is *not* a trusted proxy
(each proxy appends the address it saw, so hops to the left of the last trusted one
were written by the client and prove nothing). Calls from anywhere else keep their TCP
peer, whatever they send: a client cannot choose its own address.

The request interceptor resolves the address once per call (:func:`resolve`) and
everything else reads it with :func:`client_peer`, in the gRPC peer format
(``ipv4:203.0.113.5``, ``ipv6:[2001:db8::1]``; forwarded addresses have no port).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from typing import Any, Protocol
from urllib.parse import unquote

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: The metadata key proxies (Envoy, nginx, cloud load balancers) append to.
FORWARDED_FOR = "x-forwarded-for"


class CallContext(Protocol):
    """What this module reads of a gRPC servicer context (core code imports no grpc)."""

    def peer(self) -> str: ...

    def invocation_metadata(self) -> Any: ...


client_peer_var: ContextVar[str | None] = ContextVar("client_peer", default=None)


def parse_networks(text: str) -> tuple[Network, ...]:
    """CIDRs (or single addresses) separated by commas or whitespace; ``ValueError``
    naming the bad entry otherwise."""
    networks: list[Network] = []
    for item in text.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(
                f"GENCHARGE_TRUSTED_PROXIES: {item!r} is not an IP network (CIDR)"
            ) from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    """A hop of x-forwarded-for: ``1.2.3.4``, ``1.2.3.4:80``, ``2001:db8::1`` or
    ``[2001:db8::1]:80``; None for anything else (``unknown``, obfuscated ids)."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, networks: Sequence[Network]) -> bool:
    return any(address in network for network in networks)


def forwarded_client(
    direct: str, forwarded: Iterable[str], networks: Sequence[Network]
) -> Address | None:
    """The client address for a call whose TCP peer IP is ``direct`` and whose
    x-forwarded-for values are ``forwarded``; None to keep the TCP peer."""
    peer = _address(direct)
    if not networks or peer is None or not _trusted(peer, networks):
        return None
    hops = [hop for value in forwarded for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return None  # a proxy wrote garbage: do not guess past it
        if not _trusted(address, networks):
            return address
    return None  # only proxies: the call comes from the proxy itself


def peer_string(address: Address) -> str:
    if isinstance(address, ipaddress.IPv6Address):
        return f"ipv6:[{address}]"
    return f"ipv4:{address}"


def resolve(context: CallContext, networks: Sequence[Network], *, direct: str | None = None) -> str:
    """The client address of this call (see module docstring); ``direct``: the call's
    ``context.peer()`` when the caller has read it already."""
    direct = (context.peer() if direct is None else direct) or ""
    if not networks:
        return direct
    ip = peer_ip(direct)
    if ip is None:
        return direct
    forwarded = [
        str(value) for key, value in context.invocation_metadata() or () if key == FORWARDED_FOR
    ]
    client = forwarded_client(ip, forwarded, networks)
    return peer_string(client) if client is not None else direct


def client_peer(context: CallContext) -> str:
    """The address the request interceptor resolved for this call (the TCP peer
    outside RPCs)."""
    return client_peer_var.get() or context.peer() or ""


def peer_ip(grpc_peer: str) -> str | None:
    """The IP address in a gRPC peer string, or None (unix sockets, unknown forms).

    ``ipv4:127.0.0.1:5555`` -> ``127.0.0.1``; ``ipv6:[::1]:5555`` (or its
    percent-encoded form ``ipv6:%5B::1%5D:5555``) -> ``::1``. IPv4-mapped IPv6
    addresses become their IPv4 address.
    """
    scheme, sep, rest = unquote(grpc_peer or "").partition(":")
    if not sep:
        return None
    if scheme == "ipv4":
        host = rest.rsplit(":", 1)[0] if rest.count(":") == 1 else rest
    elif scheme == "ipv6":
        host = rest[1:].split("]", 1)[0] if rest.startswith("[") else rest
        host = host.split("%", 1)[0]  # drop a zone index (fe80::1%eth0)
    else:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    if scheme == "ipv4" and not isinstance(address, ipaddress.IPv4Address):
        return None
    return str(address)


def peer_bucket(peer: str) -> str:
    """IPv4 addresses as they are; IPv6 grouped by /64 (one subscriber's usual share)."""
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return peer
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
