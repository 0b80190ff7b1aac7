"""server/core/peers.py: which address a call comes from, behind trusted proxies or not."""

from __future__ import annotations

import ipaddress

import pytest

from server.core.peers import forwarded_client, parse_networks, peer_string

PROXIES = parse_networks("10.0.0.0/8, 127.0.0.1 2001:db8:ffff::/48")


def client(direct: str, *forwarded: str) -> str | None:
    address = forwarded_client(direct, forwarded, PROXIES)
    return None if address is None else str(address)


def test_the_rightmost_untrusted_hop_is_the_client() -> None:
    assert client("10.1.2.3", "203.0.113.5") == "203.0.113.5"
    # Hops left of it were written by the client and are ignored, even if they lie.
    assert client("10.1.2.3", "1.1.1.1, 203.0.113.5") == "203.0.113.5"
    # A chain of trusted proxies is walked back.
    assert client("10.1.2.3", "198.51.100.9, 10.9.9.9", "127.0.0.1") == "198.51.100.9"
    # Ports and brackets as proxies write them.
    assert client("127.0.0.1", "203.0.113.5:4711") == "203.0.113.5"
    assert client("127.0.0.1", "[2001:db8::7]:443") == "2001:db8::7"
    assert client("127.0.0.1", "2001:db8::7") == "2001:db8::7"
    assert client("127.0.0.1", "::ffff:203.0.113.5") == "203.0.113.5"


def test_the_tcp_peer_is_kept_unless_it_is_a_trusted_proxy() -> None:
    assert client("203.0.113.5", "10.0.0.1") is None  # a client naming someone else
    assert client("198.51.100.1", "203.0.113.5") is None
    assert client("10.1.2.3") is None  # a proxy with no header: the proxy itself
    assert client("10.1.2.3", "10.4.4.4, 127.0.0.1") is None  # only proxies
    assert client("10.1.2.3", "203.0.113.5, unknown") is None  # garbage: no guessing
    assert client("not an ip", "203.0.113.5") is None
    assert forwarded_client("10.1.2.3", ["203.0.113.5"], ()) is None  # none trusted


def test_peer_strings_read_back() -> None:
    from server.core.peers import peer_ip

    for text in ("203.0.113.5", "2001:db8::7"):
        rendered = peer_string(ipaddress.ip_address(text))
        assert peer_ip(rendered) == text
    assert peer_string(ipaddress.ip_address("2001:db8::7")) == "ipv6:[2001:db8::7]"


def test_bad_trusted_proxies_setting_is_a_clear_error() -> None:
    assert parse_networks("") == ()
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33' is not an IP network"):
        parse_networks("10.0.0.0/8,10.0.0.0/33")
