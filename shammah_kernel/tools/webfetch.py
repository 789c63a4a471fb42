"""WebFetch: a web page as readable text, within size and time limits.

The host is resolved once and every address checked: loopback, link-local and private ones are
refused unless a rule names the host (`ctx.may_fetch_private`); the connection goes to a checked
address. The deadline covers the whole exchange, and the stop button ends it within ~0.1 s.
"""

from __future__ import annotations

import http.client
import time
from email.message import Message
from pathlib import Path
from urllib.parse import urljoin

from ..errors import ToolError
from .arguments import str_arg
from .base import Arguments, ToolContext, ToolOutcome, cap_text, looks_binary
from .html_text import html_to_text
from .web_address import BadURL, IPAddress, Target, non_public_kind, parse_target
from .web_connection import (
    Budget,
    FetchStopped,
    FetchTimedOut,
    GuardedSocket,
    connect,
    resolve,
    start_tls,
)

MAX_REDIRECTS = 5
USER_AGENT = "Shammah-WebFetch/0.1"
TEXT_TYPES = ("application/json", "application/xml", "application/javascript", "+xml", "+json")


class _Redirect(Exception):
    def __init__(self, location: str) -> None:
        self.location = location


class WebFetchTool:
    name = "WebFetch"
    description = (
        "Fetch an http(s) URL and return the page as readable text (HTML is converted: "
        "headings, paragraphs, lists, code, links as `text (url)`). Redirects to another host "
        "are not followed: the result names the new URL to fetch."
    )
    parameters: dict[str, object] = {
        "type": "object",
        "properties": {"url": {"type": "string", "description": "The http or https URL."}},
        "required": ["url"],
        "additionalProperties": False,
    }

    def describe(self, arguments: Arguments, workspace: Path) -> str:
        return f"Fetch {str_arg(arguments, 'url')}"

    def specifiers(self, arguments: Arguments, workspace: Path) -> tuple[str, ...]:
        """The canonical host and URL: a rule for `127.0.0.1` is what `127.1` is matched against."""
        url = str_arg(arguments, "url")
        try:
            target = parse_target(url)
        except BadURL:  # run refuses it whatever the rules say
            return ("domain:", url)
        return (f"domain:{target.host}", target.url)

    def preview(self, arguments: Arguments, workspace: Path) -> str:
        return ""

    def run(self, arguments: Arguments, ctx: ToolContext) -> ToolOutcome:
        url = str_arg(arguments, "url")
        try:
            target = parse_target(url)
        except BadURL:
            raise ToolError(f"{url!r} is not an http or https URL") from None
        budget = Budget(time.monotonic() + ctx.fetch_timeout, ctx.should_stop)
        for _ in range(MAX_REDIRECTS + 1):
            try:
                return self._fetch(url, target, ctx, budget)
            except _Redirect as redirect:
                location = urljoin(url, redirect.location)
                try:
                    following = parse_target(location)
                except BadURL:
                    following = None
                # Another scheme, host or port is another permission: the model asks anew.
                if following is None or following.origin != target.origin:
                    return ToolOutcome(
                        f"{url} redirects to {location}; fetch that URL to follow it."
                    )
                url, target = location, following
            except FetchTimedOut:
                raise ToolError(f"timed out after {ctx.fetch_timeout:g} s: {url}") from None
            except FetchStopped:
                raise ToolError(f"stopped by the user; {url} was not fetched") from None
            except (OSError, http.client.HTTPException) as error:
                raise ToolError(f"could not fetch {url}: {error}") from None
        raise ToolError(f"too many redirects (more than {MAX_REDIRECTS}) from {url}")

    def _fetch(self, url: str, target: Target, ctx: ToolContext, budget: Budget) -> ToolOutcome:
        headers, body, complete = self._exchange(url, target, ctx, budget)
        kind = headers.get_content_type() if headers.get("Content-Type") else ""
        if looks_binary(body) or not (
            kind.startswith("text/") or kind.endswith(TEXT_TYPES) or not kind
        ):
            raise ToolError(f"{url} is binary ({kind or 'unknown type'}), not text; not fetched")
        charset = headers.get_content_charset() or "utf-8"
        try:
            text = body.decode(charset, errors="replace")
        except LookupError:  # a charset Python does not know
            text = body.decode("utf-8", errors="replace")
        if kind in ("text/html", "application/xhtml+xml") or (
            not kind and text.lstrip()[:15].lower().startswith(("<!doctype html", "<html"))
        ):
            text = html_to_text(text, url, budget.slice)  # a costly page is bounded too
        text = cap_text(text, ctx.max_output_chars)
        if not complete:
            text += (
                f"\n[the response is over {ctx.fetch_max_bytes:,} bytes; only its start is shown]"
            )
        return ToolOutcome(text)

    def _exchange(
        self, url: str, target: Target, ctx: ToolContext, budget: Budget
    ) -> tuple[Message, bytes, bool]:
        """One GET to a checked address of `target`: headers, body (capped), whether complete."""
        addresses = self._checked_addresses(url, target, ctx, budget)
        sock = connect(addresses, target.port, budget)
        try:
            if target.scheme == "https":  # SNI and the certificate check use the URL's host
                sock = start_tls(sock, target.host, budget)
            connection = http.client.HTTPConnection(target.host, target.port)
            connection.sock = GuardedSocket(sock, budget)
            connection.request(
                "GET", target.path, headers={"Host": target.host_header, "User-Agent": USER_AGENT}
            )
            response = connection.getresponse()
            if 300 <= response.status < 400 and response.getheader("Location"):
                raise _Redirect(response.getheader("Location") or "")
            if not 200 <= response.status < 300:
                raise ToolError(f"HTTP {response.status} {response.reason} from {url}")
            body, complete = self._read(response, ctx, budget)
            return response.headers, body, complete
        finally:
            sock.close()

    def _checked_addresses(
        self, url: str, target: Target, ctx: ToolContext, budget: Budget
    ) -> tuple[IPAddress, ...]:
        """The host's addresses from one lookup; one non-public address refuses them all
        (no picking a good one among bad ones), unless a rule names the host."""
        addresses = resolve(target.host, target.port, budget)
        for address in addresses:
            kind = non_public_kind(address)
            if kind and not ctx.may_fetch_private(target.host, target.port):
                raise ToolError(
                    f"{url} is refused: {target.host} is {address}, a {kind} address. "
                    "WebFetch reaches loopback, link-local and private addresses only when a "
                    f"rule names the host (WebFetch(domain:{target.host}))."
                )
        return addresses

    def _read(
        self, response: http.client.HTTPResponse, ctx: ToolContext, budget: Budget
    ) -> tuple[bytes, bool]:
        """The body up to `fetch_max_bytes`, and whether that was all of it."""
        chunks: list[bytes] = []
        size = 0
        while size <= ctx.fetch_max_bytes:
            budget.slice()
            chunk = response.read1(65536)
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)[: ctx.fetch_max_bytes], False
