"""`jiuzhu deadletter list|show|redrive`: the upstream dead letters, and a way back for them.

An operator who fixed the cause (a missing enrolment, a bug in the intake) sends a dead
letter back to the subject it came on, byte for byte: its CloudEvents source and id are
unchanged, so its receipt makes it take effect once however often it is redriven (and the
broker drops a repeat within its duplicate window, Nats-Msg-Id `redrive:<stream>:<seq>`).
The dead letter is removed once the upstream stream has acknowledged its copy. NATS only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import nats
import nats.js.errors
import typer
from nats.js.client import JetStreamContext

from consumers.brokers import BrokerKind, broker_kind
from consumers.deadletter import DETAIL, ERROR, MESSAGE_KEY, ORIGIN, REASON, TRUNCATED
from jiuzhu.cli_common import console, fail, load_settings, print_json
from jiuzhu.runtime import endpoints
from jiuzhu.serve import ServeSettings

__all__ = ["DeadLetter", "app", "dead_letters", "redrive"]

app = typer.Typer(help="Upstream messages the intake could not use: list, show, send back.")

T = TypeVar("T")
Json = Annotated[bool, typer.Option("--json", help="JSON on stdout")]


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter as kept on the dead-letter stream."""

    sequence: int
    body: bytes
    headers: dict[str, str]

    @property
    def summary(self) -> dict[str, Any]:
        """What `list` shows of it."""
        h = self.headers
        return {
            "sequence": self.sequence,
            "at": h.get("x-deadletter-at", ""),
            "reason": h.get(REASON, ""),
            "error": h.get(ERROR, ""),
            "message_key": h.get(MESSAGE_KEY, ""),
            "origin": h.get(ORIGIN, ""),
            "bytes": int(h.get(TRUNCATED) or len(self.body)),
            "truncated": TRUNCATED in h,
        }


def deadletter_stream(upstream_stream: str) -> str:
    """The stream that keeps the intake's dead letters (consumers.streams.Places)."""
    return f"{upstream_stream}_DEADLETTER"


async def dead_letters(js: JetStreamContext, stream: str) -> list[DeadLetter]:
    """Every dead letter still kept, oldest first."""
    state = (await js.stream_info(stream)).state
    letters = []
    for sequence in range(state.first_seq, state.last_seq + 1):
        try:
            kept = await js.get_msg(stream, sequence)
        except nats.js.errors.NotFoundError:  # redriven (deleted) already
            continue
        letters.append(DeadLetter(sequence, kept.data or b"", dict(kept.headers or {})))
    return letters


async def redrive(
    js: JetStreamContext, stream: str, letter: DeadLetter, *, upstream: str, prefix: str
) -> None:
    """Send a dead letter back to its origin subject, then remove it from the dead letters."""
    origin = letter.headers.get(ORIGIN, "")
    if TRUNCATED in letter.headers:
        msg = f"dead letter {letter.sequence} was cut to fit the broker: the original is gone"
        raise ValueError(msg)
    if not origin.startswith(f"{prefix}."):
        msg = f"dead letter {letter.sequence} has no origin subject to go back to"
        raise ValueError(msg)
    headers = {
        k: v for k, v in letter.headers.items() if not k.startswith(("x-deadletter-", "Nats-"))
    }
    headers["Nats-Msg-Id"] = f"redrive:{stream}:{letter.sequence}"
    ack = await js.publish(origin, letter.body, headers=headers)
    if ack.stream != upstream:
        msg = f"{origin} went to stream {ack.stream}, not {upstream}: dead letter kept"
        raise ValueError(msg)
    await js.delete_msg(stream, letter.sequence)


def _with_stream(work: Callable[[JetStreamContext, str, ServeSettings], Awaitable[T]]) -> T:
    settings = load_settings()
    options = ServeSettings()
    with endpoints(settings, broker=True) as ends:
        url = ends.broker_url or ""
        if broker_kind(url) is not BrokerKind.NATS:
            raise fail(f"dead letters can be listed and redriven on NATS only, not {url}")

        async def run() -> T:
            client = await nats.connect(url)
            try:
                return await work(client.jetstream(), options.upstream_stream, options)
            except nats.js.errors.NotFoundError:
                where = deadletter_stream(options.upstream_stream)
                raise fail(f"no dead letters kept: stream {where} does not exist") from None
            finally:
                await client.close()

        return asyncio.run(run())


@app.command("list")
def list_command(
    reason: Annotated[str | None, typer.Option(help="Only this reason")] = None,
    as_json: Json = False,
) -> None:
    """The dead letters kept: sequence, when, reason, error, message key, origin."""

    async def work(js: JetStreamContext, upstream: str, _: ServeSettings) -> list[DeadLetter]:
        return await dead_letters(js, deadletter_stream(upstream))

    rows = [
        letter.summary
        for letter in _with_stream(work)
        if reason is None or letter.headers.get(REASON) == reason
    ]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        cut = " (cut)" if row["truncated"] else ""
        console.print(
            f"{row['sequence']:>6}  {row['at'][:19]}  {row['reason']:<16} {row['error']:<20} "
            f"{row['message_key'] or '-'}  {row['origin']}  {row['bytes']} bytes{cut}",
            highlight=False,
            soft_wrap=True,
        )
    console.print(f"{len(rows)} dead letter(s)", highlight=False)


@app.command("show")
def show_command(
    sequence: Annotated[int, typer.Argument(help="The dead letter's sequence (see list)")],
    as_json: Json = False,
) -> None:
    """One dead letter: its headers (reason, detail...) and its body."""

    async def work(js: JetStreamContext, upstream: str, _: ServeSettings) -> DeadLetter:
        kept = await js.get_msg(deadletter_stream(upstream), sequence)
        return DeadLetter(sequence, kept.data or b"", dict(kept.headers or {}))

    letter = _with_stream(work)
    body = letter.body.decode("utf-8", "backslashreplace")
    if as_json:
        print_json({**letter.summary, "headers": letter.headers, "body": body})
        return
    for name, value in sorted(letter.headers.items()):
        console.print(f"{name}: {value}", highlight=False, soft_wrap=True, markup=False)
    console.print(f"detail: {letter.headers.get(DETAIL, '')}", highlight=False, markup=False)
    console.print()
    console.print(body, highlight=False, soft_wrap=True, markup=False)


@app.command("redrive")
def redrive_command(
    sequences: Annotated[list[int] | None, typer.Argument(help="Dead letters to send back")] = None,
    reason: Annotated[str | None, typer.Option(help="Every dead letter of this reason")] = None,
) -> None:
    """Send dead letters back to the intake, unchanged: each takes effect once, at most."""
    if not sequences and reason is None:
        raise fail("name the dead letters to redrive (sequences) or --reason")

    async def work(js: JetStreamContext, upstream: str, options: ServeSettings) -> list[str]:
        stream = deadletter_stream(upstream)
        chosen = [
            letter
            for letter in await dead_letters(js, stream)
            if (sequences and letter.sequence in sequences)
            or (reason is not None and letter.headers.get(REASON) == reason)
        ]
        problems = []
        for letter in chosen:
            try:
                await redrive(js, stream, letter, upstream=upstream, prefix=options.upstream_prefix)
            except ValueError as error:
                problems.append(str(error))
            else:
                console.print(f"redriven {letter.sequence} to {letter.headers.get(ORIGIN)}")
        missing = set(sequences or ()) - {letter.sequence for letter in chosen}
        problems += [f"no dead letter {sequence}" for sequence in sorted(missing)]
        return problems

    problems = _with_stream(work)
    if problems:
        raise fail("; ".join(problems))
