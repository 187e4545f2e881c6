"""The NATS puller's header parser gives what nats-py's own gives."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from consumers.nats_pull import parse_header_lines

HARD_CASES = [
    b"event-id: 3f1c2a9e\r\nNats-Msg-Id: 3f1c2a9e\r\nnotification-id: 12\r\n\r\n",
    b"topic: domain.case:Case.Paid\r\n",  # a colon in the value
    b"Name:Value\r\nName2:\tValue2\r\n",  # no space, a tab after the colon
    b"bad name: x\r\nok: y\r\n",  # whitespace inside a name
    b"\x1cname: x\r\nname\x1f: y\r\n",  # whitespace bytes.strip() keeps, str.isspace() does not
    b"caf\xc3\xa9: x\r\n",  # a non-ASCII name
    b"reason: \xe6\x9d\x8e\xe6\x9f\x90 \xff\r\n",  # UTF-8 value with a broken byte
    b"no colon here\r\n: empty name\r\nempty:\r\n",
    b"dup: 1\r\ndup: 2\r\n",
    b"",
]


@pytest.mark.parametrize("raw", HARD_CASES)
def test_header_lines_parse_as_nats_py_parses_them(raw: bytes) -> None:
    assert parse_header_lines(raw) == Client._parse_header_lines(raw)


def test_nats_py_still_parses_headers_where_the_puller_replaces_it() -> None:
    # If nats-py renames it, the puller keeps nats-py's parser: correct, only slower.
    assert callable(getattr(Client, "_parse_header_lines", None))
