"""WebFetch against a hostile model: no loopback, link-local or private address without a rule
naming the host, however it is spelled or resolved; redirects stay on one origin; the deadline
covers the whole exchange and the stop button ends it. Servers are local and stopped by each test.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shammah_kernel.events import ToolCall, ToolResult
from shammah_kernel.permissions import Rule
from shammah_kernel.tools import ALL_TOOLS, ToolContext, html_text, run_tool, webfetch
from shammah_kernel.tools.html_text import html_to_text

PUBLIC = "93.184.215.14"  # stands for a public host; tests route it to the local server
LOOPBACK_SPELLINGS = (
    "127.0.0.1", "127.1", "127.0.1", "2130706433", "0x7f000001", "0x7F000001", "0177.0.0.1",
    "017700000001", "0x7f.1", "0x7f.0.0.1", "127.0.0.1.", "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]", "１２７.０.０.１", "127。0。0。1",
)  # fmt: skip
OTHER_LOCAL_HOSTS = ("localhost", "LOCALHOST.", "0.0.0.0", "0", "[::]", "[::1]", "0x0")
NON_PUBLIC = (
    "127.0.0.1", "127.255.0.9", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
    "169.254.169.254", "100.64.0.1", "100.127.255.254", "0.0.0.0", "224.0.0.1", "239.1.2.3",
    "255.255.255.255", "240.0.0.1", "::1", "::", "fe80::1", "fd00::1", "fc00::2", "fec0::1",
    "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
    "2002:7f00:1::", "2002:a9fe:a9fe::1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe",
    "64:ff9b:1::1", "::127.0.0.1", "2001:db8::1",
)  # fmt: skip
PUBLIC_ADDRESSES = ("93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700::1111", "2a00:1450::1")


# --- local servers ---


class Site:
    """An HTTP server on 127.0.0.1 with fixed routes; `hits` lists the paths it was asked for."""

    def __init__(
        self,
        routes: dict[str, tuple[int, dict[str, str], bytes]],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.routes = routes
        self.hits: list[str] = []
        self.hosts: list[str] = []  # the Host header of each request
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,))

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                site.hits.append(self.path)
                site.hosts.append(self.headers.get("Host", ""))
                status, headers, body = site.routes.get(self.path, (404, {}, b"not found"))
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value.replace("{port}", str(site.port)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def __enter__(self) -> Site:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


class Trickler:
    """A raw TCP server that answers each byte after `pause` seconds, `head` first, then
    `forever` byte after byte, until the test ends (a server that trickles headers or a body)."""

    def __init__(self, head: bytes, forever: bytes, pause: float = 0.2) -> None:
        self.head, self.forever, self.pause = head, forever, pause
        self.done = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = int(self.listener.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.done.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                data = self.head
                while not self.done.is_set():
                    for byte in data:
                        if self.done.wait(self.pause):
                            return
                        conn.sendall(bytes([byte]))
                    data = self.forever
            except OSError:  # the client gave up: that is the point
                return

    def __enter__(self) -> Trickler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self._thread.join(5)
        self.listener.close()


# --- helpers ---


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    return ToolContext(workspace=tmp_path)


def fetch(ctx: ToolContext, url: str, within: float = 30.0) -> ToolResult:
    """The WebFetch result, in a thread the test waits on for at most `within` seconds."""
    results: list[ToolResult] = []
    call = ToolCall("call-1", "WebFetch", {"url": url})
    worker = threading.Thread(target=lambda: results.append(run_tool(call, ctx)), daemon=True)
    worker.start()
    worker.join(within)
    assert results, f"WebFetch of {url} still running after {within} s"
    return results[0]


def allow_private(host: str, port: int) -> Callable[[str, int], bool]:
    return lambda asked_host, asked_port: (asked_host, asked_port) == (host, port)


@dataclasses.dataclass
class Network:
    """A fake DNS and a record of connections: `PUBLIC` is routed to 127.0.0.1."""

    answers: Callable[[int], list[str]]  # lookup number (0, 1...) -> addresses
    lookups: list[str] = dataclasses.field(default_factory=list)
    connects: list[str] = dataclasses.field(default_factory=list)


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Network]]:
    real_getaddrinfo = socket.getaddrinfo
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def install(answers: Callable[[int], list[str]]) -> Network:
        net = Network(answers)

        def getaddrinfo(host: object, port: object, *args: object, **kwargs: object) -> list:
            if not str(host).endswith(".test"):
                return real_getaddrinfo(host, port, *args, **kwargs)  # type: ignore[arg-type]
            net.lookups.append(str(host))
            infos = []
            for text in answers(len(net.lookups) - 1):
                family = socket.AF_INET6 if ":" in text else socket.AF_INET
                address = (text, int(port), 0, 0) if ":" in text else (text, int(port))  # type: ignore[call-overload]
                infos.append((family, socket.SOCK_STREAM, 6, "", address))
            return infos

        def route(address: object) -> tuple[object, bool]:
            host = str(address[0]) if isinstance(address, tuple) else ""
            net.connects.append(host)
            if host == PUBLIC:
                return ("127.0.0.1", address[1]), True  # type: ignore[index]
            return address, ipaddress.ip_address(host).is_loopback if host else True

        def connect(self: socket.socket, address: object) -> None:
            target, reachable = route(address)
            if not reachable:
                raise ConnectionRefusedError(errno.ECONNREFUSED, "refused by the test")
            real_connect(self, target)  # type: ignore[arg-type]

        def connect_ex(self: socket.socket, address: object) -> int:
            target, reachable = route(address)
            return real_connect_ex(self, target) if reachable else errno.ECONNREFUSED  # type: ignore[arg-type]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(socket.socket, "connect", connect)
        monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
        return net

    yield install


def plain_site() -> Site:
    return Site({"/plain.txt": (200, {"Content-Type": "text/plain"}, b"local secret\n")})


# --- canonical hosts: rules see one spelling ---


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_odd_spellings_of_loopback_read_as_127_0_0_1_for_rules(ctx: ToolContext, host: str) -> None:
    domain, url = ALL_TOOLS["WebFetch"].specifiers({"url": f"http://{host}:8000/x"}, ctx.workspace)
    assert domain == "domain:127.0.0.1" and url == "http://127.0.0.1:8000/x"
    assert Rule.parse("WebFetch(domain:127.0.0.1)").matches("WebFetch", domain)  # a deny holds
    assert not Rule.parse("WebFetch(domain:127.1)").matches("WebFetch", domain)


def test_names_are_lowercase_ascii_without_user_info_or_trailing_dots(ctx: ToolContext) -> None:
    cases = {
        "https://Docs.Python.ORG./3/": ("domain:docs.python.org", "https://docs.python.org/3/"),
        "http://Bücher.Example/a?b=1": ("domain:xn--bcher-kva.example", "http://xn--bcher-kva.example/a?b=1"),
        "http://example.com@127.0.0.1/": ("domain:127.0.0.1", "http://127.0.0.1/"),
        "https://example.com:443/#x": ("domain:example.com", "https://example.com/"),
        "http://[::1]:8080/": ("domain:::1", "http://[::1]:8080/"),
    }  # fmt: skip
    for url, expected in cases.items():
        assert ALL_TOOLS["WebFetch"].specifiers({"url": url}, ctx.workspace) == expected


@pytest.mark.parametrize(
    "url", ["http://256.0.0.1/", "http://1.2.3.4.5/", "http://09.0.0.1/", "http://example.123/",
            "http://a b/", "http://%31%32%37.0.0.1/", "http://[fe80::1%25eth0]/", "http://[::1/"],
)  # fmt: skip
def test_hosts_that_do_not_parse_are_not_fetched(ctx: ToolContext, url: str) -> None:
    result = fetch(ctx, url)
    assert result.is_error and result.content == f"{url!r} is not an http or https URL"


# --- the address check ---


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS + OTHER_LOCAL_HOSTS)
def test_loopback_is_refused_without_a_rule_however_spelled(ctx: ToolContext, host: str) -> None:
    with plain_site() as site:
        result = fetch(ctx, f"http://{host}:{site.port}/plain.txt")
    assert result.is_error and " is refused: " in result.content
    assert "address. WebFetch reaches loopback" in result.content
    assert site.hits == []


def test_a_rule_naming_the_host_lets_it_fetch(ctx: ToolContext) -> None:
    asked: list[tuple[str, int]] = []

    def may_fetch_private(host: str, port: int) -> bool:
        asked.append((host, port))
        return host == "127.0.0.1"

    allowed = dataclasses.replace(ctx, may_fetch_private=may_fetch_private)
    with plain_site() as site:
        for host in ("127.0.0.1", "127.1", "0x7f000001"):
            result = fetch(allowed, f"http://{host}:{site.port}/plain.txt")
            assert not result.is_error and result.content == "local secret\n"
        assert fetch(allowed, f"http://localhost:{site.port}/plain.txt").is_error
    assert asked[:3] == [("127.0.0.1", site.port)] * 3
    assert site.hits == ["/plain.txt"] * 3


@pytest.mark.parametrize("address", NON_PUBLIC)
def test_names_resolving_to_non_public_addresses_are_refused(
    ctx: ToolContext, network: Callable[..., Network], address: str
) -> None:
    net = network(lambda _: [address])
    result = fetch(ctx, "http://metadata.test/latest/meta-data/")
    assert result.is_error and result.content.startswith(
        "http://metadata.test/latest/meta-data/ is refused: metadata.test is "
    )
    assert net.connects == []


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_names_resolving_to_public_addresses_are_connected_to(
    ctx: ToolContext, network: Callable[..., Network], address: str
) -> None:
    net = network(lambda _: [address])
    result = fetch(ctx, "http://public.test:9/")  # the test refuses all but PUBLIC, routed home
    assert result.is_error and "could not fetch" in result.content
    assert net.connects == [address]


def test_one_non_public_address_among_public_ones_refuses_the_fetch(
    ctx: ToolContext, network: Callable[..., Network]
) -> None:
    with plain_site() as site:
        net = network(lambda _: [PUBLIC, "127.0.0.1"])
        result = fetch(ctx, f"http://mixed.test:{site.port}/plain.txt")
    assert result.is_error and "mixed.test is 127.0.0.1, a loopback address" in result.content
    assert net.connects == [] and site.hits == []


def test_dns_rebinding_connects_to_the_checked_address_only(
    ctx: ToolContext, network: Callable[..., Network]
) -> None:
    """The first lookup says public, every later one says loopback: one lookup is made and
    the connection goes to the address that was checked."""
    with plain_site() as site:
        net = network(lambda n: [PUBLIC] if n == 0 else ["127.0.0.1"])
        result = fetch(ctx, f"http://rebind.test:{site.port}/plain.txt")
    assert not result.is_error and result.content == "local secret\n"
    assert net.lookups == ["rebind.test"] and net.connects == [PUBLIC]


def test_each_followed_redirect_checks_the_address_again(
    ctx: ToolContext, network: Callable[..., Network]
) -> None:
    routes = {
        "/start": (302, {"Location": "/plain.txt"}, b""),
        "/plain.txt": (200, {"Content-Type": "text/plain"}, b"local secret\n"),
    }
    with Site(routes) as site:
        net = network(lambda n: [PUBLIC] if n == 0 else ["127.0.0.1"])
        result = fetch(ctx, f"http://hop.test:{site.port}/start")
    assert result.is_error and "hop.test is 127.0.0.1, a loopback address" in result.content
    assert net.lookups == ["hop.test", "hop.test"] and site.hits == ["/start"]


# --- redirects: scheme, host and port ---


def test_a_redirect_to_another_port_scheme_or_host_is_not_followed(ctx: ToolContext) -> None:
    with plain_site() as other:
        routes = {
            "/port": (302, {"Location": f"http://127.0.0.1:{other.port}/plain.txt"}, b""),
            "/scheme": (301, {"Location": "https://127.0.0.1:{port}/plain.txt"}, b""),
            "/host": (307, {"Location": "http://localhost:{port}/plain.txt"}, b""),
            "/file": (302, {"Location": "file:///etc/passwd"}, b""),
            "/same": (302, {"Location": "http://127.1:{port}/plain.txt"}, b""),
            "/plain.txt": (200, {"Content-Type": "text/plain"}, b"same origin\n"),
        }
        with Site(routes) as site:
            allowed = dataclasses.replace(ctx, may_fetch_private=lambda host, port: True)
            base = f"http://127.0.0.1:{site.port}"
            targets = {
                "/port": f"http://127.0.0.1:{other.port}/plain.txt",
                "/scheme": f"https://127.0.0.1:{site.port}/plain.txt",
                "/host": f"http://localhost:{site.port}/plain.txt",
                "/file": "file:///etc/passwd",
            }
            for path, target in targets.items():
                result = fetch(allowed, base + path)
                assert not result.is_error
                assert result.content == (
                    f"{base}{path} redirects to {target}; fetch that URL to follow it."
                )
            assert fetch(allowed, base + "/same").content == "same origin\n"
    assert other.hits == [] and site.hits == [*targets, "/same", "/plain.txt"]


# --- time: the deadline covers the whole exchange, stop ends it ---


@pytest.mark.parametrize(
    ("head", "forever"),
    [
        (b"HTTP/1.1 200 OK\r\n", b"X-Slow: a\r\n"),  # headers, one byte at a time, never ending
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", b"x"),  # a trickled body
        (b"", b"H"),  # a status line that never ends
    ],
)
def test_a_trickling_server_is_cut_at_the_deadline(
    ctx: ToolContext, head: bytes, forever: bytes
) -> None:
    quick = dataclasses.replace(ctx, fetch_timeout=1.5, may_fetch_private=lambda h, p: True)
    with Trickler(head, forever) as server:
        result = fetch(quick, f"http://127.0.0.1:{server.port}/", within=30)
    assert result.is_error
    assert result.content == f"timed out after 1.5 s: http://127.0.0.1:{server.port}/"


def test_stop_ends_a_fetch_from_a_silent_server(ctx: ToolContext) -> None:
    stop = threading.Event()
    patient = dataclasses.replace(
        ctx, fetch_timeout=60, should_stop=stop.is_set, may_fetch_private=lambda h, p: True
    )
    with Trickler(b"", b"", pause=60) as server:
        threading.Timer(0.3, stop.set).start()
        started = time.monotonic()
        result = fetch(patient, f"http://127.0.0.1:{server.port}/", within=30)
    assert time.monotonic() - started < 20  # generous: the server would wait 60 s
    assert result.is_error and result.content.startswith("stopped by the user")


def test_stop_ends_a_fetch_waiting_on_a_slow_lookup(
    ctx: ToolContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: time.sleep(30) or [])
    stop = threading.Event()
    patient = dataclasses.replace(ctx, fetch_timeout=60, should_stop=stop.is_set)
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    result = fetch(patient, "http://slow-dns.test/", within=25)
    assert time.monotonic() - started < 20
    assert result.is_error and result.content.startswith("stopped by the user")


# --- https: the checked address, the URL's host for SNI and the certificate ---


@pytest.fixture
def certificate(tmp_path: Path) -> Path:
    """A self-signed certificate (and key, in the same file) for `tls.test`."""
    pem = tmp_path / "tls.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=tls.test", "-addext", "subjectAltName=DNS:tls.test", "-keyout", str(pem),
         "-out", str(pem)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return pem


def test_https_connects_to_the_checked_address_with_the_url_host_for_sni_and_certificate(
    ctx: ToolContext,
    network: Callable[..., Network],
    certificate: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names: list[str | None] = []
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(certificate)
    server_side.sni_callback = lambda sock, name, context: names.append(name)
    with Site({"/": (200, {"Content-Type": "text/plain"}, b"over tls\n")}, server_side) as site:
        net = network(lambda _: [PUBLIC])
        untrusted = fetch(ctx, f"https://tls.test:{site.port}/")  # a self-signed certificate
        assert untrusted.is_error and "CERTIFICATE_VERIFY_FAILED" in untrusted.content
        default_context = ssl.create_default_context
        monkeypatch.setattr(
            ssl, "create_default_context", lambda: default_context(cafile=str(certificate))
        )
        result = fetch(ctx, f"https://tls.test:{site.port}/")
        assert not result.is_error and result.content == "over tls\n"
        allowed = dataclasses.replace(ctx, may_fetch_private=lambda host, port: True)
        mismatch = fetch(allowed, f"https://127.1:{site.port}/")  # the cert names tls.test only
        assert mismatch.is_error and "CERTIFICATE_VERIFY_FAILED" in mismatch.content
    assert names == ["tls.test", "tls.test", None]  # no SNI for an IP address
    assert net.lookups == ["tls.test", "tls.test"] and net.connects == [PUBLIC, PUBLIC, "127.0.0.1"]
    assert site.hosts == [f"tls.test:{site.port}"]


# --- a costly page: linear, and the deadline and stop reach the HTML conversion ---


def in_thread(work: Callable[[], object], within: float) -> list[object]:
    done: list[object] = []
    worker = threading.Thread(target=lambda: done.append(work()), daemon=True)
    worker.start()
    worker.join(within)
    assert done, f"still running after {within} s"
    return done


@pytest.mark.parametrize(
    "page",
    ["<a " * 200_000, "</a" * 200_000, "< " * 300_000, ("<" * 4000 + ">") * 150,
     ("<a " * 1300 + ">") * 150, "<!--" * 150_000],
)  # fmt: skip
def test_hostile_html_converts_in_linear_time(page: str) -> None:
    in_thread(lambda: html_to_text(page, "http://x/"), within=20)  # html.parser alone: minutes


def test_text_that_looks_like_a_tag_opening_stays_text() -> None:
    assert html_to_text("<p>a < b << c</p>x <a href=y") == "a < b << c\n\nx <a href=y"
    image = '<img src="data:image/png;base64,' + "A" * 100_000 + '">'  # a long tag is a tag
    assert html_to_text(f"<p>1 {image} 2</p>") == "1 2"


def test_stop_ends_the_conversion_of_a_large_page(ctx: ToolContext) -> None:
    page = b"<b>" * 600_000  # ~3 s of html.parser work
    stop = threading.Event()
    patient = dataclasses.replace(
        ctx, fetch_timeout=60, should_stop=stop.is_set, may_fetch_private=lambda h, p: True
    )
    with Site({"/": (200, {"Content-Type": "text/html"}, page)}) as site:
        real = html_text.html_to_text

        def slow_start(html: str, base_url: str = "", check: object = None) -> str:
            stop.set()  # the user presses stop as the conversion begins
            return real(html, base_url, check) if check else real(html, base_url)  # type: ignore[arg-type]

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(webfetch, "html_to_text", slow_start)
            result = fetch(patient, f"http://127.0.0.1:{site.port}/", within=20)
    assert result.is_error and result.content.startswith("stopped by the user")
