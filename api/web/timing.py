"""Server-Timing on the workbench's answers: how long the server took before it answered.

Browsers' developer tools show it, and the benchmark reads it to tell page work from the
network and the client. Pure ASGI (no BaseHTTPMiddleware): nothing is buffered.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ServerTiming"]

_PREFIXES = ("/web", "/static")


class ServerTiming:
    """Adds `Server-Timing: app;dur=<ms>` to the workbench's pages and static files."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(_PREFIXES):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                elapsed = (time.perf_counter() - started) * 1000
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", f"app;dur={elapsed:.2f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed_send)
