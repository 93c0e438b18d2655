"""Request guards (decision 0008): body size, JSON nesting depth, slow request bodies, rate limits.

``Guard`` is plain ASGI middleware (like observe.py: BaseHTTPMiddleware costs CPU on every request). It streams
request bodies through without buffering them: it counts bytes against the route's limit, feeds JSON bodies to
an incremental depth scanner and bounds every read of the body in time. On a violation it answers itself
(413, 400, 408, with ``Connection: close``) and tells the application the client has gone.

Rate limits are token buckets (ratelimit.py). Every request is charged to its client address when it arrives;
``charge_caller`` (called by the authentication dependencies once a caller is verified) gives that token back
and charges the verified identity instead, so participants that share an address (a NAT, loopback) do not
share a budget, while unauthenticated and refused requests stay limited by address.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from itertools import accumulate
from operator import sub
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from d4h.node.ratelimit import Rate, RateLimited, RateLimiter, retry_after_header

_log = logging.getLogger("d4h.guard")

# -- JSON nesting depth (pure) --------------------------------------------------------------------

_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPEN_AS_2 = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_NUMPY_FROM = 512  # brackets per chunk above which numpy sums faster than Python iterators


class DepthScanner:
    """Incremental maximum nesting depth of JSON bytes, chunk by chunk, brackets inside strings ignored.

    It does not validate JSON (the parser does, later): it only bounds how deep the parser will have to go.
    Every step is a C-level bytes operation (replace, split, join, translate, cumulative sum),
    so a 1 MiB body costs a few milliseconds, not a Python loop per byte.
    """

    __slots__ = ("carry", "deepest", "depth", "in_string")

    def __init__(self) -> None:
        self.depth = 0
        self.deepest = 0
        self.in_string = False
        self.carry = b""  # trailing backslashes: what they escape is in the next chunk

    def feed(self, chunk: bytes) -> int:
        """Scan the next chunk; returns the deepest nesting seen so far."""
        data = self.carry + chunk if self.carry else chunk
        text = data.rstrip(b"\\")
        self.carry = data[len(text) :]
        if b"\\" in text:
            # Escapes pair up from the left: drop escaped backslashes, then escaped quotes. Runs of backslashes
            # never merge (a non-backslash separates them), so what remains has no escaped quote left.
            text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
        # Every quote left opens or closes a string: the pieces between quotes alternate outside/inside.
        pieces = text.split(b'"')
        outside = b"".join(pieces[1::2] if self.in_string else pieces[::2])
        if len(pieces) % 2 == 0:  # an odd number of quotes: the string state flips for the next chunk
            self.in_string = not self.in_string
        brackets = outside.translate(None, _NOT_BRACKETS)
        if brackets:
            self._walk(brackets.translate(_OPEN_AS_2))  # opening = 2, closing = 0: the change is value - 1
        return self.deepest

    def _walk(self, steps: bytes) -> None:
        if len(steps) < _NUMPY_FROM:
            peak = max(map(sub, accumulate(steps), range(1, len(steps) + 1)))
            change = sum(steps) - len(steps)
        else:
            levels = np.cumsum(np.frombuffer(steps, dtype=np.int8) - 1, dtype=np.int64)
            peak, change = int(levels.max()), int(levels[-1])
        self.deepest = max(self.deepest, self.depth + peak)
        self.depth += change


def json_depth(data: bytes) -> int:
    """The maximum nesting depth of a JSON document (``1`` for ``[]``, ``0`` for a scalar)."""
    return DepthScanner().feed(data)


def is_json(content_type: str | None) -> bool:
    """Bodies the node parses as JSON: no content type, application/json or application/*+json (FastAPI's rule)."""
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


# -- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GuardConfig:
    max_body_bytes: int = 1 << 20
    body_limits: tuple[tuple[str, int], ...] = ()  # (path prefix, bytes), longest prefix first
    max_json_depth: int = 64
    body_chunk_timeout_s: float = 10.0
    body_timeout_s: float = 30.0

    @classmethod
    def from_settings(cls, s: Any) -> GuardConfig:
        limits = sorted(s.body_limits.items(), key=lambda item: len(item[0]), reverse=True)
        return cls(
            max_body_bytes=s.max_body_bytes,
            body_limits=tuple(limits),
            max_json_depth=s.max_json_depth,
            body_chunk_timeout_s=s.body_chunk_timeout_s,
            body_timeout_s=s.body_timeout_s,
        )

    def body_limit(self, path: str) -> int:
        for prefix, limit in self.body_limits:
            if path.startswith(prefix):
                return limit
        return self.max_body_bytes


class CallerLimits:
    """The node's rate limiters (verified identities, client addresses) and how a refusal is recorded."""

    def __init__(self, identities: Rate, addresses: Rate, metrics: Any) -> None:
        self.identities = RateLimiter(identities)
        self.addresses = RateLimiter(addresses)
        self.metrics = metrics

    @classmethod
    def from_settings(cls, s: Any, metrics: Any) -> CallerLimits:
        return cls(
            Rate(s.rate_limit_per_s, s.rate_limit_burst),
            Rate(s.address_rate_limit_per_s, s.address_rate_limit_burst),
            metrics,
        )

    def refused(self, kind: str, who: str, path: str, wait_s: float, first: bool) -> RateLimited:
        self.metrics.rate_limited.labels(kind).inc()
        if first:  # one line per flood, not per refused request
            _log.warning(
                "rate limit hit", extra={"kind": kind, "caller": who, "path": path, "retry_after_s": wait_s}
            )
        return RateLimited(kind, wait_s)


_ADDRESS_KEY = "d4h.rate.address"  # in scope["state"]: the address charged for this request, until refunded


def charge_caller(request: Request, kind: str, identity: str) -> None:
    """Charge a verified caller (``kind`` participant|admin) instead of its address; raises RateLimited."""
    limits: CallerLimits | None = getattr(request.app.state, "rate_limits", None)
    if limits is None:
        return
    address = request.scope.get("state", {}).pop(_ADDRESS_KEY, None)
    if address is not None:
        limits.addresses.refund(address)
    wait, first = limits.identities.take(f"{kind}:{identity}")
    if wait:
        raise limits.refused(kind, identity, request.url.path, wait, first)


def rate_limited_response(exc: RateLimited) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, body and headers of a 429 (the body shape of node errors, see node/errors.py)."""
    after = retry_after_header(exc.wait_s)
    body = {
        "error": "rate_limited",
        "message": f"too many requests from this {exc.kind}; retry after {after} s",
        "hint": "slow down: requests are limited per participant, admin and client address",
    }
    return 429, body, {"Retry-After": after}


async def send_error(
    send: Send,
    status: int,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    *,
    close: bool = False,
) -> None:
    data = orjson.dumps(body)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if close:  # the rest of the body is unread: the connection cannot carry another request
        raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


# -- the middleware -------------------------------------------------------------------------------


class Guard:
    def __init__(self, app: ASGIApp, config: GuardConfig, limits: CallerLimits, metrics: Any) -> None:
        self.app = app
        self.config = config
        self.limits = limits
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        state = scope.setdefault("state", {})
        length, chunked, content_type = _body_headers(scope)
        has_body = chunked or bool(length)
        if self.limits.addresses.rate.enabled:
            address = scope["client"][0] if scope.get("client") else "unknown"
            wait, first = self.limits.addresses.take(address)
            if wait:
                status, body, headers = rate_limited_response(
                    self.limits.refused("address", address, path, wait, first)
                )
                await send_error(send, status, body, headers, close=has_body)
                return
            state[_ADDRESS_KEY] = address
        limit = self.config.body_limit(path)
        if length is not None and length > limit:
            await self._refuse_now(send, 413, "body_too_large", _too_large(length, limit))
            return
        if not has_body:  # nothing more to guard
            await self.app(scope, receive, send)
            return
        guarded = _GuardedBody(self, receive, send, limit, DepthScanner() if is_json(content_type) else None)
        try:
            await self.app(scope, guarded.receive, guarded.send)
        except Exception:
            if not guarded.refused:
                raise
            # The app failed reading a body we cut off; the client already has our answer.
            _log.debug("application error after a guard refusal", exc_info=True)

    async def _refuse_now(self, send: Send, status: int, reason: str, message: str) -> None:
        self.metrics.guard_refusals.labels(reason).inc()
        _log.info("request refused by guard", extra={"reason": reason, "status": status})
        await send_error(send, status, {"error": reason, "message": message}, close=True)


class _GuardedBody:
    """One request's body as the application reads it: counted, scanned and bounded in time."""

    def __init__(
        self, guard: Guard, receive: Receive, send: Send, limit: int, scanner: DepthScanner | None
    ) -> None:
        self.guard = guard
        self._receive = receive
        self._send = send
        self.limit = limit
        self.scanner = scanner
        self.received = 0
        self.done = False
        self.refused = False
        self.started = False
        self.deadline = asyncio.get_running_loop().time() + guard.config.body_timeout_s

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        if self.done:  # after the body only a disconnect can come, whenever it comes: no timeout
            return await self._receive()
        cfg = self.guard.config
        left = self.deadline - asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(max(0.0, min(cfg.body_chunk_timeout_s, left))):
                message = await self._receive()
        except TimeoutError:
            what = (
                f"the request body was not complete within {cfg.body_timeout_s:g} s"
                if left <= cfg.body_chunk_timeout_s
                else f"no request body data arrived for {cfg.body_chunk_timeout_s:g} s"
            )
            return await self._refuse(408, "request_timeout", what)
        if message["type"] != "http.request":
            return message
        chunk: bytes = message.get("body", b"")
        self.received += len(chunk)
        if self.received > self.limit:
            return await self._refuse(
                413, "body_too_large", _too_large(self.received, self.limit, streamed=True)
            )
        if self.scanner is not None and self.scanner.feed(chunk) > cfg.max_json_depth:
            depth = self.scanner.deepest
            return await self._refuse(
                400,
                "json_too_deep",
                f"JSON body nests {depth} levels deep; the limit is {cfg.max_json_depth}",
            )
        if not message.get("more_body", False):
            self.done = True
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return  # our answer went out; the application's late one is dropped
        if message["type"] == "http.response.start":
            self.started = True
            if not self.done:  # answered without reading the whole body: do not wait for the rest of it
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
        await self._send(message)

    async def _refuse(self, status: int, reason: str, message: str) -> Message:
        self.refused = True
        if self.started:  # the application answered already; just stop its reading
            self.guard.metrics.guard_refusals.labels(reason).inc()
        else:
            await self.guard._refuse_now(self._send, status, reason, message)
        return {"type": "http.disconnect"}


def _too_large(size: int, limit: int, *, streamed: bool = False) -> str:
    said = f"more than {limit} bytes arrived" if streamed else f"Content-Length {size}"
    return f"request body too large: {said}; the limit for this path is {limit} bytes"


def _body_headers(scope: Scope) -> tuple[int | None, bool, str | None]:
    length: int | None = None
    chunked = False
    content_type: str | None = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None  # the HTTP parser refuses malformed lengths before we see them
                chunked = True  # be safe: guard the body as if streamed
        elif name == b"transfer-encoding":
            chunked = chunked or b"chunked" in value.lower()
        elif name == b"content-type":
            content_type = value.decode("latin-1")
    return length, chunked, content_type
