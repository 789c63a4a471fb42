"""Where a WebFetch goes: the URL's canonical host, and which addresses it may reach.

Rules are matched against the canonical host, so `127.1`, `0x7f000001` or `[::ffff:127.0.0.1]`
read as `127.0.0.1`; the resolved addresses are checked, and only checked ones are connected to.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PORTS = {"http": 80, "https": 443}
_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
_NUMBER = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")

# Addresses that are not the public internet, each with the word the refusal uses.
_V4_RANGES = (
    ("0.0.0.0/8", "unspecified"), ("127.0.0.0/8", "loopback"), ("169.254.0.0/16", "link-local"),
    ("10.0.0.0/8", "private"), ("172.16.0.0/12", "private"), ("192.168.0.0/16", "private"),
    ("100.64.0.0/10", "shared (CGNAT)"), ("192.0.0.0/24", "reserved"), ("192.0.2.0/24", "reserved"),
    ("192.88.99.0/24", "reserved"), ("198.18.0.0/15", "reserved"), ("198.51.100.0/24", "reserved"),
    ("203.0.113.0/24", "reserved"), ("224.0.0.0/4", "multicast"), ("240.0.0.0/4", "reserved"),
)  # fmt: skip
_V6_RANGES = (
    ("::/128", "unspecified"), ("::1/128", "loopback"), ("::/96", "reserved"),
    ("fe80::/10", "link-local"), ("fec0::/10", "private"), ("fc00::/7", "private"),
    ("64:ff9b:1::/48", "private"), ("100::/64", "reserved"), ("2001:db8::/32", "reserved"),
    ("ff00::/8", "multicast"),
)  # fmt: skip
_NETWORKS = tuple((ipaddress.ip_network(net), word) for net, word in _V4_RANGES + _V6_RANGES)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BadURL(ValueError):
    """A URL WebFetch does not fetch: not http(s), or a host or port that does not parse."""


@dataclass(frozen=True, slots=True)
class Target:
    """One request's destination: `host` is canonical (lowercase ASCII name or address text)."""

    scheme: str
    host: str
    port: int
    path: str  # path and query, as given

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The URL as rules see it: canonical host, no user info, no default port."""
        return f"{self.scheme}://{self.host_header}{self.path}"


def parse_target(url: str) -> Target:
    """`url` as a Target; raises BadURL for anything but a well-formed http(s) URL."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
        hostname = parts.hostname
    except ValueError as error:  # an unclosed IPv6 bracket, a port out of range
        raise BadURL(str(error)) from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not hostname:
        raise BadURL("not an http or https URL")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme, canonical_host(hostname), port or DEFAULT_PORTS[scheme], path)


def canonical_host(raw: str) -> str:
    """The one spelling of a host: IP literals as address text, names lowercase IDNA ASCII."""
    host = raw.strip().lower()
    if ":" in host:  # only an IPv6 literal has a colon once urlsplit took the port off
        if "%" in host:  # a zone ID names an interface, never a public host (WHATWG refuses it)
            raise BadURL(f"the host {raw!r} has an IPv6 zone ID")
        return str(_canonical_address(_parse_address(host)))
    try:  # the stdlib codec maps full-width digits and dots too, so map before reading numbers
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError as error:
        raise BadURL(f"the host {raw!r} is not a valid name ({error})") from None
    host = host.rstrip(".")
    labels = host.split(".")
    if _NUMBER.fullmatch(labels[-1]):  # the WHATWG URL rule: a host ending in a number is IPv4
        return str(_parse_ipv4(labels, raw))
    if not _NAME.fullmatch(host):
        raise BadURL(f"the host {raw!r} is not a valid name")
    return host


def _parse_address(text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise BadURL(f"the host {text!r} is not a valid IP address") from None


def _canonical_address(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address is the IPv4 address it maps (the same socket destination)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _parse_ipv4(labels: list[str], raw: str) -> ipaddress.IPv4Address:
    """inet_aton's forms, as the WHATWG URL standard reads them: `127.1`, `0x7f000001`, octal."""
    numbers = [_ipv4_number(label) for label in labels]
    if len(numbers) > 4 or None in numbers:
        raise BadURL(f"the host {raw!r} is not a valid IPv4 address")
    values = [n for n in numbers if n is not None]
    if any(n > 255 for n in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        raise BadURL(f"the host {raw!r} is not a valid IPv4 address")
    value = values[-1] + sum(n * 256 ** (3 - i) for i, n in enumerate(values[:-1]))
    return ipaddress.IPv4Address(value)


def _ipv4_number(label: str) -> int | None:
    try:
        if label[:2] in ("0x", "0X"):
            return int(label[2:] or "0", 16)
        if len(label) > 1 and label.startswith("0"):
            return int(label[1:], 8)
        return int(label, 10) if label.isdigit() and label.isascii() else None
    except ValueError:  # `09` is not octal; an empty label
        return None


def address_of_literal(host: str) -> IPAddress | None:
    """The address a canonical host names when it is an IP literal, else None (a name)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def non_public_kind(address: IPAddress) -> str | None:
    """Why `address` is not on the public internet ("loopback", "private"...), or None."""
    address = _canonical_address(address)
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return non_public_kind(embedded)
        address = ipaddress.IPv6Address(address.packed)  # drop a %zone for the range test
    for network, word in _NETWORKS:
        if address.version == network.version and address in network:
            return word
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a 6to4, NAT64 or Teredo address carries: it is where packets end up."""
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(address.packed[-4:])
    if address.teredo is not None:
        server, client = address.teredo
        return server if non_public_kind(server) else client
    return None
