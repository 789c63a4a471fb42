"""A small web site on 127.0.0.1 for WebFetch tests, without internet.

Pages: `/page.html` (HTML), `/plain.txt`, `/data.json`, `/latin1.txt` (declared charset),
`/image.png` (binary), `/big` (a body of `BIG_BYTES`), `/slow` (answers after `SLOW_SECONDS`),
`/redirect` (to /plain.txt on this host), `/redirect-away` (to `localhost`, another host),
`/loop` (redirects to itself); anything else 404s.
"""

from __future__ import annotations

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BIG_BYTES = 200_000
SLOW_SECONDS = 5.0

PAGE = """<!doctype html>
<html><head><title>Tool Test Page</title>
<style>body { color: red }</style><script>var secret = "script text";</script></head>
<body>
<nav><a href="/">Home</a> <a href="/about">Navigation link</a></nav>
<h1>Welcome</h1>
<p>Read <a href="/docs/guide.html">the guide</a> and run <code>pip install shammah</code>.</p>
<h2>Steps</h2>
<ul><li>first step</li><li>second step</li></ul>
<pre><code>def hello():
    return 42
</code></pre>
</body></html>
"""


class WebServer:
    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> WebServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()  # ends a /slow request at once
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def _handler_for(server: WebServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            routes = {
                "/page.html": ("text/html; charset=utf-8", PAGE.encode()),
                "/plain.txt": ("text/plain; charset=utf-8", b"just plain text\nline two\n"),
                "/data.json": ("application/json", b'{"answer": 42}'),
                "/latin1.txt": ("text/plain; charset=iso-8859-1", "café".encode("latin-1")),
                "/image.png": ("image/png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(100)),
                "/big": ("text/plain", b"x" * BIG_BYTES),
            }
            if self.path in routes:
                self._send(200, *routes[self.path])
            elif self.path == "/slow":
                server.stopping.wait(SLOW_SECONDS)
                with contextlib.suppress(OSError):  # the client gave up long ago
                    self._send(200, "text/plain", b"too late")
            elif self.path in ("/redirect", "/redirect-away", "/loop"):
                target = {
                    "/redirect": "/plain.txt",
                    "/redirect-away": f"http://localhost:{server.port}/plain.txt",
                    "/loop": "/loop",
                }[self.path]
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._send(404, "text/plain", b"not found")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
