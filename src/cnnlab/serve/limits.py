"""What the server allows: upload sizes, pixels, time, and how much work runs at once.

- **Request heads** must arrive whole within ``head_timeout_s`` of the connection opening (or
  of the previous response): :class:`HeadTimeoutProtocol` closes connections that trickle
  bytes or sit idle, so slow clients cannot use up the connection limit. uvicorn's own
  keep-alive timer is restarted by every byte received, which a slow client can exploit.
- **Bodies** are read with a byte limit (413 as soon as it is passed, without reading the
  rest) and a deadline for the whole body (408), so a client that sends slowly holds only
  its own connection, never a worker.
- **Work** goes through a :class:`Gate`: at most ``running`` jobs compute at once (each in a
  worker thread), at most ``waiting`` more queue for a place; past that the answer is 503
  with a one-line reason rather than unbounded memory. Decoding uploads has a gate of its
  own, so 50 large photos are not all decoded at once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

import anyio
import anyio.to_thread
from uvicorn.protocols.http.h11_impl import H11Protocol

from cnnlab.serve.inference import DEFAULT_MAX_PIXELS


T = TypeVar("T")

MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 10 * MB  # multipart body, all parts together
    max_pixels: int = DEFAULT_MAX_PIXELS  # decoded image, checked from the header (the image policy's default)
    head_timeout_s: float = 10.0  # a request's head (request line and headers) must arrive within this
    body_timeout_s: float = 30.0  # the whole request body must arrive within this
    running: int = 2  # inference jobs computing at once (threads); the CPU is the limit
    waiting: int = 64  # jobs queued beyond those; more get 503
    decoding: int = 2  # uploads decoded at once
    cache_bytes: int = 512 * MB  # activations kept for recent inputs (least recently used dropped)
    cache_items: int = 64  # inputs kept at most
    atlas_pixels: int = 1_500_000  # one layer's thumbnails as one PNG at most this many pixels

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "running", "waiting", "decoding", "cache_bytes",
                     "cache_items", "atlas_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"limit {name} must be >= 1, got {getattr(self, name)}")
        for name in ("head_timeout_s", "body_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


class HTTPProblem(Exception):
    """An answer with a status and one line of reason (turned into JSON by the app)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Gate:
    """At most ``running`` jobs at once, ``waiting`` more queued, the rest refused with 503."""

    def __init__(self, running: int, waiting: int, what: str) -> None:
        self.running = running
        self.waiting = waiting
        self.what = what
        self._limiter = anyio.CapacityLimiter(running)
        self._admitted = 0  # running + waiting (only changed on the event loop's thread)
        self.peak = 0  # most jobs admitted at once, for tests and /api/health

    @property
    def admitted(self) -> int:
        return self._admitted

    async def run(self, func: Callable[..., T], *args) -> T:
        """Run ``func(*args)`` in a worker thread once a place is free."""
        if self._admitted >= self.running + self.waiting:
            raise HTTPProblem(503, f"server busy: {self._admitted} {self.what} jobs running or queued; retry shortly")
        self._admitted += 1
        self.peak = max(self.peak, self._admitted)
        try:
            return await anyio.to_thread.run_sync(func, *args, limiter=self._limiter)
        finally:
            self._admitted -= 1


async def read_body(receive_chunks, *, limit: int, timeout_s: float, declared: int | None) -> bytes:
    """The request body from the async iterator ``receive_chunks`` (Starlette's
    ``request.stream()``), refused with 413 when over ``limit`` bytes (at once when the
    Content-Length says so) and 408 when it has not all arrived after ``timeout_s``."""
    if declared is not None and declared > limit:
        raise HTTPProblem(413, f"upload is {declared:,} bytes; the limit is {limit:,} bytes")
    parts: list[bytes] = []
    size = 0
    deadline = time.monotonic() + timeout_s
    iterator = receive_chunks.__aiter__()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise HTTPProblem(408, f"the request body did not arrive within {timeout_s:g} s")
        try:
            chunk = await asyncio.wait_for(iterator.__anext__(), timeout=left)
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise HTTPProblem(408, f"the request body did not arrive within {timeout_s:g} s") from None
        size += len(chunk)
        if size > limit:
            raise HTTPProblem(413, f"upload is over the limit of {limit:,} bytes")
        parts.append(chunk)
    return b"".join(parts)


class HeadTimeoutProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose next request head has not
    arrived ``head_timeout`` seconds after it opened or after its last response.

    NOTE: relies on uvicorn's ``cycle`` attribute (the request in progress); uvicorn is pinned.
    """

    head_timeout: float = Limits.head_timeout_s

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = None
        self._arm()

    def _arm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        in_progress = self.cycle is not None and not self.cycle.response_complete
        if not in_progress and not self.transport.is_closing():
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        super().connection_lost(exc)


def protocol_with(head_timeout_s: float) -> type[HeadTimeoutProtocol]:
    """:class:`HeadTimeoutProtocol` with its own timeout (uvicorn takes a class, not an instance)."""
    return type("HeadTimeoutProtocol", (HeadTimeoutProtocol,), {"head_timeout": head_timeout_s})
