"""WebFetch's sockets: one lookup, a connection to a checked address, every wait bounded.

Every blocking step (the lookup, connect, TLS, each read and write) waits in slices of at most
`POLL` seconds and checks the fetch's deadline and the stop button between them, so a server
that trickles its headers a byte a second is cut at the deadline like one that says nothing.
"""

from __future__ import annotations

import errno
import io
import ipaddress
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .web_address import IPAddress, address_of_literal

POLL = 0.1  # seconds between checks of the deadline and the stop button


class FetchTimedOut(Exception):
    """The fetch's deadline passed."""


class FetchStopped(Exception):
    """The user pressed stop."""


@dataclass(frozen=True, slots=True)
class Budget:
    """The time a whole fetch has left, and the stop button."""

    deadline: float  # time.monotonic()
    should_stop: Callable[[], bool]

    def slice(self) -> float:
        """How long the next wait may be; raises once stopped or past the deadline."""
        if self.should_stop():
            raise FetchStopped
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise FetchTimedOut
        return min(remaining, POLL)


def resolve(host: str, port: int, budget: Budget) -> tuple[IPAddress, ...]:
    """Every address `host` names, from one lookup (an IP literal needs none)."""
    literal = address_of_literal(host)
    if literal is not None:
        return (literal,)
    answer: list[tuple[IPAddress, ...] | OSError] = []
    done = threading.Event()

    def look_up() -> None:  # getaddrinfo cannot be interrupted: a daemon thread may outlive us
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            answer.append(tuple(ipaddress.ip_address(str(info[4][0])) for info in infos))
        except (OSError, ValueError) as error:
            answer.append(error if isinstance(error, OSError) else OSError(str(error)))
        finally:
            done.set()

    threading.Thread(target=look_up, name="webfetch-dns", daemon=True).start()
    while not done.wait(budget.slice()):
        pass
    found = answer[0]
    if isinstance(found, OSError):
        raise found
    if not found:
        raise OSError(f"no address for {host}")
    return tuple(dict.fromkeys(found))


def connect(addresses: tuple[IPAddress, ...], port: int, budget: Budget) -> socket.socket:
    """A TCP connection to the first of `addresses` that answers (all of them were checked)."""
    error: OSError = OSError("no address")
    for address in addresses:
        try:
            return _connect_one(address, port, budget)
        except OSError as failure:
            error = failure
    raise error


def _connect_one(address: IPAddress, port: int, budget: Budget) -> socket.socket:
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        code = sock.connect_ex((str(address), port))
        while code in (errno.EINPROGRESS, errno.EWOULDBLOCK):
            _, writable, _ = select.select([], [sock], [], budget.slice())
            if writable:
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise ConnectionError(code, f"{os.strerror(code)} ({address} port {port})")
        return sock
    except BaseException:
        sock.close()
        raise


def start_tls(sock: socket.socket, server_hostname: str, budget: Budget) -> ssl.SSLSocket:
    """TLS over `sock`, verifying the certificate for `server_hostname` (the URL's host)."""
    context = ssl.create_default_context()
    tls = context.wrap_socket(sock, server_hostname=server_hostname, do_handshake_on_connect=False)
    try:
        while True:
            try:
                tls.do_handshake()
                return tls
            except ssl.SSLWantReadError:
                select.select([tls], [], [], budget.slice())
            except ssl.SSLWantWriteError:
                select.select([], [tls], [], budget.slice())
    except BaseException:
        tls.close()
        raise


class GuardedSocket:
    """The two socket methods http.client uses, each wait bounded by the fetch's budget."""

    def __init__(self, sock: socket.socket, budget: Budget) -> None:
        self.sock = sock
        self.budget = budget

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view) :]
            except (BlockingIOError, ssl.SSLWantWriteError):
                select.select([], [self.sock], [], self.budget.slice())
            except ssl.SSLWantReadError:
                select.select([self.sock], [], [], self.budget.slice())

    def recv_into(self, buffer: memoryview) -> int:
        while True:
            self.budget.slice()  # a server that always has one more byte is still cut
            try:
                return self.sock.recv_into(buffer)
            except (BlockingIOError, ssl.SSLWantReadError):
                select.select([self.sock], [], [], self.budget.slice())
            except ssl.SSLWantWriteError:
                select.select([], [self.sock], [], self.budget.slice())

    def makefile(self, mode: str = "rb", *args: object, **kwargs: object) -> io.BufferedReader:
        return io.BufferedReader(_GuardedReader(self))

    def close(self) -> None:
        """http.client closes a connection while its response still reads from the socket
        (socket.makefile counts references for that); the fetch closes the socket at its end."""


class _GuardedReader(io.RawIOBase):
    def __init__(self, guarded: GuardedSocket) -> None:
        self.guarded = guarded

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        return self.guarded.recv_into(memoryview(buffer).cast("B"))
