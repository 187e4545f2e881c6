"""Pulling a durable JetStream consumer through one inbox, without a task per message.

nats-py's PullSubscription.fetch waits for each message of a batch with next_msg, which
starts a task and a timer per message: over half of what a projector spent per event on
this 2-core machine (measured against this puller on the same stream: ~2x the messages/s).
Here the server's answers to pull requests land on one inbox subscribed with a callback
(one coroutine call per message, queued in order), and a new request goes out as soon as
the last one is answered, while the caller applies what already arrived: a prefetch of
at most about a batch beyond what is taken (asking pauses while a whole batch waits, so
redeliveries during a long database outage do not pile up).

One request is outstanding at a time, so every status the server sends (408 expired,
404 nothing left, 409 consumer deleted...) answers the current request. A puller lives as
long as one incarnation of the durable consumer: recreating the consumer means a new
puller on a new inbox, so late answers to the old one are simply not received.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

__all__ = ["ConsumerGoneError", "Puller", "parse_header_lines"]

# A request is answered (messages or a status) well within its expiry; past this much more
# it was lost (a reconnect drops pending requests) and is asked again.
LOST_REQUEST_GRACE_SECONDS = 2.0


# A 409 status that passes (a leadership change, a server shutting down) asks again after
# this long; any other 409 (consumer deleted, a request over the consumer's limits) is a
# fault, and the feed recreates the consumer.
RETRY_SECONDS = 0.05
_PASSING_409 = ("Leadership Change", "Server Shutdown", "Exceeded MaxWaiting")


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """nats-py's Client._parse_header_lines, same results, without a generator per name.

    nats-py checks each header name for whitespace character by character in a generator:
    with the nine headers of a relief.events message that was 14 us of the ~50 us of CPU
    the projector spent per event. str.split() splits on exactly the characters
    str.isspace() accepts, so a name with whitespace splits into other than itself.
    tests/test_nats_pull.py checks it against nats-py's own on hard cases.
    """
    out: dict[str, str] = {}
    for line in raw.split(b"\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        try:
            key = name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue
        if key and key.split() != [key]:
            continue
        out[key] = value.strip().decode("utf-8", "replace")
    return out


def _parse_headers_faster(client: Client) -> None:
    """Give a client the faster header parser (kept as is if nats-py no longer has one)."""
    if callable(getattr(client, "_parse_header_lines", None)):
        client._parse_header_lines = parse_header_lines  # type: ignore[method-assign]


class ConsumerGoneError(Exception):
    """The server answered a pull request with an error status (consumer deleted...)."""


class Puller:
    """Pull requests on a durable consumer, answered into one inbox, taken in batches."""

    def __init__(
        self, client: Client, stream: str, durable: str, batch: int, expires: float
    ) -> None:
        self.client = client
        self.next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.inbox = client.new_inbox()
        self.request = orjson.dumps({"batch": batch, "expires": int(expires * 1e9)})
        self.batch, self.expires = batch, expires
        self.ready: deque[Msg] = deque()
        self.fault: str | None = None
        self._owed = 0  # messages the outstanding request may still bring
        self._asked_at = 0.0
        self._changed = asyncio.Event()
        self._subscription: Subscription | None = None
        self._later: asyncio.TimerHandle | None = None
        self._asking: asyncio.Future[None] | None = None
        # A batch is ready and not taken (the read models are slow, or down): no more asking
        # until it is, or redeliveries after ack_wait would pile up here.
        self._holding = False

    @classmethod
    async def open(
        cls, client: Client, stream: str, durable: str, *, batch: int, expires: float
    ) -> Puller:
        puller = cls(client, stream, durable, batch, expires)
        _parse_headers_faster(client)
        puller._subscription = await client.subscribe(puller.inbox, cb=puller._arrived)
        await puller._ask()
        return puller

    async def close(self) -> None:
        if self._later is not None:
            self._later.cancel()
        if self._asking is not None:  # not to the consumer's next incarnation, same name
            self._asking.cancel()
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None

    async def take(self, up_to: int, *, wait: float, linger: float, quiet: float) -> list[Msg]:
        """Up to a number of messages in stream order: [] after `wait` s with none.

        When fewer are ready than asked for, waits for more to join while they keep
        coming: until none arrived for `quiet` s (the burst is over), `linger` s at most.
        Raises ConsumerGoneError when the server said the consumer is gone.
        """
        await self._first(wait)
        deadline = time.monotonic() + linger
        seen = len(self.ready)
        while 0 < seen < up_to and self.fault is None:
            pause = min(quiet, deadline - time.monotonic())
            if pause <= 0:
                break
            # Polled, not woken per message: a wake-up per arrival would cost more than
            # the rest of a message's way through the projector.
            await asyncio.sleep(pause)
            if len(self.ready) == seen:
                break
            seen = len(self.ready)
        return self.take_ready(up_to)

    def take_ready(self, up_to: int) -> list[Msg]:
        """What has arrived, up to a number, without waiting."""
        if self.fault is not None:
            raise ConsumerGoneError(self.fault)
        ready = self.ready
        taken = [ready.popleft() for _ in range(min(up_to, len(ready)))]
        if self._holding and len(ready) < self.batch:
            self._holding = False
            self._ask_soon()
        return taken

    async def _first(self, seconds: float) -> None:
        """Wait up to some seconds for a message (or a fault) to be ready."""
        deadline = time.monotonic() + seconds
        while not self.ready and self.fault is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._changed.clear()  # before asking: an answer meanwhile must wake us
            if time.monotonic() - self._asked_at > self.expires + LOST_REQUEST_GRACE_SECONDS:
                await self._ask()  # no answer at all: the request was lost
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, self.expires))

    async def _ask(self) -> None:
        self._owed, self._asked_at = self.batch, time.monotonic()
        await self.client.publish(self.next_subject, self.request, reply=self.inbox)

    async def _answered(self) -> None:
        """The outstanding request is answered: ask again, unless a batch waits untaken."""
        if len(self.ready) >= self.batch:
            self._holding = True
        else:
            await self._ask()

    def _ask_soon(self) -> None:
        self._asking = asyncio.ensure_future(self._ask())

    async def _arrived(self, msg: Msg) -> None:
        headers = msg.headers
        status = headers.get("Status") if headers and not msg.data else None
        if status is None:
            self.ready.append(msg)
            self._owed -= 1
            if self._owed <= 0:
                await self._answered()
        elif status == "100":  # an idle heartbeat: not an answer
            return
        elif status in ("404", "408"):  # nothing (more) to give, or expired
            await self._answered()
        else:
            description = str(headers.get("Description", "")) if headers else ""
            if status == "409" and description.startswith(_PASSING_409):
                self._later = asyncio.get_running_loop().call_later(RETRY_SECONDS, self._ask_soon)
                return
            # Consumer deleted, no responders (503), over its limits: recreate the consumer.
            self.fault = f"{status} {description}".strip()
        if self.ready or self.fault is not None:
            self._changed.set()
