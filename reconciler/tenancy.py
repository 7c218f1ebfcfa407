"""Tenant safety: which hosts a Reconcile may make the operator call, and which Secrets it may use.

A tenant who may create Reconciles controls `apiUrl` / `url` and `credentials.secretRef`. Without
these rules the operator would call any host from its own network position (server-side request
forgery) and send any Secret of the namespace there as a bearer token.

- Hosts: `RECONCILER_ALLOWED_HOSTS` (`host`, `host:port`, `*.example.com`, IP literals). A host that
  matches is still refused when it resolves to an internal address (loopback, link-local, private,
  shared, reserved), unless that host name or that address is listed explicitly (not through a
  wildcard). The check runs on the addresses the connection then uses: `create_connection` resolves,
  checks and connects to the checked address itself, so a name that rebinds between the check and
  the connection gets nowhere.
- Secrets: only those labelled `reconciler.dev/credentials: "true"` (as Argo CD's
  `argocd.argoproj.io/secret-type`).

The operator enforces both; `reconciler plan/apply` runs with the user's own credentials on their
own machine and enforces the hosts only when `RECONCILER_ENFORCE_ALLOWED_HOSTS=true`.
`reconciler doctor` reuses these checks.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from reconciler.errors import PermanentError, TransientError

CREDENTIALS_LABEL = "reconciler.dev/credentials"
CREDENTIALS_LABEL_VALUE = "true"
DEFAULT_ALLOWED_HOSTS = "slack.com,gitlab.com"
"""Slack's Web API (https://slack.com/api/) and GitLab.com."""

Resolver = Callable[..., Sequence[tuple[Any, ...]]]
"""`socket.getaddrinfo`'s signature: (host, port, family, type) -> [(family, type, proto, name, sockaddr)]."""

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class HostNotAllowed(PermanentError):
    def __init__(self, message: str) -> None:
        super().__init__("HostNotAllowed", message)


class CredentialsNotAllowed(PermanentError):
    def __init__(self, message: str) -> None:
        super().__init__("CredentialsNotAllowed", message)


def check_credentials_label(labels: Mapping[str, Any] | None, where: str) -> None:
    """A Secret may serve as credentials only when its owner labelled it so."""
    if (labels or {}).get(CREDENTIALS_LABEL) != CREDENTIALS_LABEL_VALUE:
        raise CredentialsNotAllowed(
            f'{where} is not labelled {CREDENTIALS_LABEL}: "{CREDENTIALS_LABEL_VALUE}"; whoever owns it '
            "may allow its use with: "
            f"kubectl label secret <name> {CREDENTIALS_LABEL}={CREDENTIALS_LABEL_VALUE}"
        )


@dataclass(frozen=True)
class HostRule:
    """One entry of the allow-list: `host`, `*.domain` (subdomains only) or an IP, optional port."""

    host: str
    port: int | None = None
    wildcard: bool = False

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.wildcard:
            return host.endswith("." + self.host)
        return host == self.host

    def __str__(self) -> str:
        host = ("*." if self.wildcard else "") + (f"[{self.host}]" if ":" in self.host else self.host)
        return host if self.port is None else f"{host}:{self.port}"


def _normalise(host: str) -> str:
    return host.strip().rstrip(".").lower()


def parse_rule(entry: str) -> HostRule:
    """`slack.com`, `gitlab.example.com:8443`, `*.example.com`, `10.0.0.5`, `[fd00::1]:443`."""
    text = entry.strip()
    port: int | None = None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{entry!r}: expected [IPv6]:port")
            port = _port(rest[1:], entry)
    elif text.count(":") == 1:
        host, _, raw_port = text.partition(":")
        port = _port(raw_port, entry)
    else:
        host = text  # a name, or a bare IPv6 address
    host = _normalise(host)
    wildcard = host.startswith("*.")
    if wildcard:
        host = host[2:]
    if not host or "*" in host or "/" in host or any(c.isspace() for c in host):
        raise ValueError(f"{entry!r} is not a host, host:port or *.domain")
    return HostRule(host=host, port=port, wildcard=wildcard)


def _port(raw: str, entry: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535")
    return int(raw)


def parse_allowed_hosts(text: str) -> tuple[HostRule, ...]:
    """The comma-separated `RECONCILER_ALLOWED_HOSTS`; ValueError names a bad entry."""
    return tuple(parse_rule(entry) for entry in text.split(",") if entry.strip())


def is_internal(address: IpAddress) -> bool:
    """Loopback, link-local (cloud metadata), private and cluster ranges, shared, reserved, multicast."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def _ip(text: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _url_host_port(url: str, field: str) -> tuple[str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise HostNotAllowed(f"{field}: {url!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HostNotAllowed(f"{field}: {url!r} is not an http(s) URL")
    return _normalise(parts.hostname), port or (443 if parts.scheme == "https" else 80)


class HostPolicy:
    """The allow-list and the resolver; `create_connection` is the only way the clients connect."""

    def __init__(self, rules: Sequence[HostRule], resolve: Resolver = socket.getaddrinfo) -> None:
        self.rules = tuple(rules)
        self._resolve = resolve

    @property
    def identity(self) -> tuple[object, ...]:
        """What every check depends on: two policies with one identity allow the same connections
        (the key under which a kept-alive connection may be reused, egress.py)."""
        return (self.rules, self._resolve)

    @classmethod
    def parse(cls, text: str, resolve: Resolver = socket.getaddrinfo) -> HostPolicy:
        return cls(parse_allowed_hosts(text), resolve)

    def check_url(self, url: str, field: str) -> None:
        """Before anything is sent: is `url` (a spec field) allowed, after DNS resolution?"""
        host, port = _url_host_port(url, field)
        try:
            self.addresses(host, port)
        except HostNotAllowed as exc:
            raise HostNotAllowed(f"{field}: {exc.message}") from None
        except OSError as exc:
            raise TransientError("HostUnresolvable", f"{field}: cannot resolve {host}: {exc}") from None

    def addresses(self, host: str, port: int) -> list[tuple[Any, ...]]:
        """The resolved addresses of an allowed host, each checked; HostNotAllowed otherwise."""
        host = _normalise(host)
        rule = next((r for r in self.rules if r.matches(host, port)), None)
        if rule is None:
            listed = ", ".join(str(r) for r in self.rules) or "nothing"
            raise HostNotAllowed(
                f"{host}:{port} is not in the operator's allowed hosts ({listed}); "
                "the cluster admin may add it to RECONCILER_ALLOWED_HOSTS"
            )
        infos = list(self._resolve(host, port, 0, socket.SOCK_STREAM))
        for info in infos:
            address = _ip(str(info[4][0]))
            if address is None or not is_internal(address) or not rule.wildcard:
                continue  # public, or the host itself was listed by name or address
            if any(not r.wildcard and _ip(r.host) == address and r.port in (None, port) for r in self.rules):
                continue
            raise HostNotAllowed(
                f"{host} resolves to the internal address {address}; list {host} or {address} "
                "explicitly in RECONCILER_ALLOWED_HOSTS to allow it"
            )
        if not infos:
            raise OSError(f"no address for {host}")
        return infos

    def create_connection(
        self,
        address: tuple[str, int],
        timeout: float | None = None,
        source_address: tuple[str, int] | None = None,
    ) -> socket.socket:
        """`socket.create_connection`, but only to addresses this policy checked just now."""
        host, port = address
        last: OSError | None = None
        for family, type_, proto, _, sockaddr in self.addresses(host, port):
            sock = socket.socket(family, type_, proto)
            try:
                if timeout is not None:
                    sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                last = exc
        raise last or OSError(f"cannot connect to {host}:{port}")
