"""Running the app on uvicorn: inside `jiuzhu serve`, in a thread (tests, demo), or alone."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Generator, Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI

from api.settings import ApiSettings

__all__ = [
    "QuietServer",
    "demo_invitation",
    "running_in_thread",
    "serve_in_loop",
    "serve_until_stopped",
    "start_api",
    "url_of",
]


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signals to its host (jiuzhu serve stops it itself)."""

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _config(app: FastAPI, host: str, port: int, **extra: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
        **extra,
    )


def url_of(server: uvicorn.Server) -> str:
    """The base URL a started server listens on (the real port when 0 was asked)."""
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    return f"http://{host}:{port}"


async def serve_in_loop(
    stack: AsyncExitStack, app: FastAPI, api: ApiSettings, stopping: asyncio.Event
) -> tuple[QuietServer, asyncio.Task[None]]:
    """Serve the app in the running loop until stopping is set; the server and its task."""
    server = QuietServer(_config(app, api.host, api.port))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises why it could not start (e.g. the port is taken)
            raise RuntimeError(f"the API could not listen on {api.host}:{api.port}")
        await asyncio.sleep(0.02)

    async def stop() -> None:
        server.should_exit = True
        await task

    async def stop_when_asked() -> None:
        await stopping.wait()
        await stop()

    stack.push_async_callback(stop)
    return server, asyncio.create_task(stop_when_asked())


@contextmanager
def running_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve the app from a thread while the block runs; its base URL."""
    server = QuietServer(_config(app, host, port))
    thread = threading.Thread(target=server.run, name="jiuzhu-api", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"the API server could not start on {host}:{port}")
            threading.Event().wait(0.01)
        yield url_of(server)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


async def start_api(
    stack: AsyncExitStack, casework: Any, settings: Any, stopping: asyncio.Event, health: Any
) -> asyncio.Task[None]:
    """`jiuzhu serve api`: the app on the service's CaseWork, until the service stops."""
    from api.app import create_app

    api = ApiSettings()
    app = create_app(settings, casework=casework, api_settings=api)
    server, task = await serve_in_loop(stack, app, api, stopping)
    health.checks["api"] = lambda: server.started and not server.should_exit
    health.figures["api"] = lambda: {"url": url_of(server)}
    return task


def serve_until_stopped(app: FastAPI, api: ApiSettings) -> None:
    """Serve the app in this thread until SIGINT/SIGTERM (`jiuzhu demo --serve`), then return.

    uvicorn's own handlers raise the signal again once stopped (exit 130): ours only stop it,
    so the caller closes what it opened and exits 0.
    """
    server = QuietServer(_config(app, api.host, api.port))

    def stop(signum: int, frame: object) -> None:
        server.should_exit = True

    before = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def demo_invitation(settings: Any, api: ApiSettings, *, serving: bool) -> list[str]:
    """What `jiuzhu demo` says at its end: where the API and workbench are, and a token."""
    from api.auth import TokenError, TokenVerifier

    url = f"http://{api.host}:{api.port}/"
    try:
        token = TokenVerifier(settings, api).issue("demo-caseworker", "caseworker")
    except TokenError:  # an identity provider issues the tokens
        token = "(from your identity provider)"
    lines = [
        f"workbench: {url}web/  (sign in as one of the demo's staff)",
        f"API: {url}  (reference: {url}docs)",
        f"token (caseworker, 8 h): {token}",
        "  other roles: jiuzhu token --actor NAME --role approver|auditor|analyst",
        f'  try: curl -H "Authorization: Bearer $(jiuzhu token --actor me --role caseworker)" '
        f'"{url}verification-tasks?overdue=true"',
    ]
    if not serving:
        lines.append("  serving it: jiuzhu demo --serve  (or jiuzhu serve api on the same data)")
    else:
        lines.append("  serving until Ctrl-C")
    return lines
