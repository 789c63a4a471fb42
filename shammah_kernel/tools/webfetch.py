"""WebFetch: a web page as readable text, within size and time limits."""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from ..errors import ToolError
from .arguments import str_arg
from .base import Arguments, ToolContext, ToolOutcome, cap_text, looks_binary
from .html_text import html_to_text

MAX_REDIRECTS = 5
USER_AGENT = "Shammah-WebFetch/0.1"
TEXT_TYPES = ("application/json", "application/xml", "application/javascript", "+xml", "+json")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects come back as HTTPErrors, so WebFetch follows them itself, host by host."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:  # a malformed URL, e.g. an unclosed IPv6 bracket
        return ""


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
        url = str_arg(arguments, "url")
        return (f"domain:{_host(url)}", url)

    def preview(self, arguments: Arguments, workspace: Path) -> str:
        return ""

    def run(self, arguments: Arguments, ctx: ToolContext) -> ToolOutcome:
        url = str_arg(arguments, "url")
        if not url.lower().startswith(("http://", "https://")) or not _host(url):
            raise ToolError(f"{url!r} is not an http or https URL")
        deadline = time.monotonic() + ctx.fetch_timeout
        for _ in range(MAX_REDIRECTS + 1):
            try:
                return self._fetch(url, ctx, deadline)
            except urllib.error.HTTPError as error:
                error.close()
                location = error.headers.get("Location") if 300 <= error.code < 400 else None
                if not location:
                    raise ToolError(f"HTTP {error.code} {error.reason} from {url}") from None
                target = urljoin(url, location)
                # Another host is another permission: the model fetches it as a new call.
                if _host(target) != _host(url) or urlsplit(target).scheme not in ("http", "https"):
                    return ToolOutcome(f"{url} redirects to {target}; fetch that URL to follow it.")
                url = target
            except (OSError, http.client.HTTPException) as error:
                reason = error.reason if isinstance(error, urllib.error.URLError) else error
                if isinstance(reason, TimeoutError):
                    raise ToolError(f"timed out after {ctx.fetch_timeout:g} s: {url}") from None
                raise ToolError(f"could not fetch {url}: {reason}") from None
        raise ToolError(f"too many redirects (more than {MAX_REDIRECTS}) from {url}")

    def _fetch(self, url: str, ctx: ToolContext, deadline: float) -> ToolOutcome:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        remaining = max(0.1, deadline - time.monotonic())
        # Built per call: the opener reads the proxy settings from the environment.
        opener = urllib.request.build_opener(_NoRedirects)
        with opener.open(request, timeout=remaining) as response:
            body, complete = self._read(response, ctx, deadline)
            headers: Message = response.headers
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
            text = html_to_text(text, url)
        text = cap_text(text, ctx.max_output_chars)
        if not complete:
            text += (
                f"\n[the response is over {ctx.fetch_max_bytes:,} bytes; only its start is shown]"
            )
        return ToolOutcome(text)

    def _read(
        self, response: http.client.HTTPResponse, ctx: ToolContext, deadline: float
    ) -> tuple[bytes, bool]:
        """The body up to `fetch_max_bytes`, and whether that was all of it."""
        chunks: list[bytes] = []
        size = 0
        while size <= ctx.fetch_max_bytes:
            if time.monotonic() > deadline:
                raise TimeoutError
            chunk = response.read1(65536)
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)[: ctx.fetch_max_bytes], False
