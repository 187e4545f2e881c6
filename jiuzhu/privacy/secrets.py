"""Secrets kept in files (embedded/demo default): created once, atomically, readable only by us."""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from jiuzhu.settings import Settings

__all__ = ["master_key_from_settings", "read_or_create_secret"]


def read_or_create_secret(path: Path, make: Callable[[], bytes]) -> bytes:
    """The file's bytes; on first use write make() there with mode 0600.

    Two processes starting together must not each keep a different key: the new file is
    written aside and hard-linked into place, which fails if another process won.
    """
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    aside = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(make())
            file.flush()
            os.fsync(file.fileno())
        # If another process created it first, use theirs.
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
    finally:
        aside.unlink(missing_ok=True)
    return path.read_bytes()


def master_key_from_settings(settings: Settings) -> bytes:
    """The master key: JIUZHU_MASTER_KEY, else <data_dir>/keys/master.key (made on first use)."""
    if settings.master_key is not None:
        return base64.b64decode(settings.master_key.get_secret_value())
    path = settings.data_dir / "keys" / "master.key"
    encoded = read_or_create_secret(path, lambda: base64.b64encode(os.urandom(32)) + b"\n")
    return base64.b64decode(encoded.strip())
