"""Tasks for `ConverterProcesses` tests: what a hostile file can make a parser do, on demand."""

from __future__ import annotations

import os
import time
from typing import Any


def spin(data: bytes, *, seconds: float) -> None:
    """Burns CPU like a parser stuck in a loop."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


def allocate(data: bytes, *, megabytes: int) -> int:
    """Holds memory like a parser building a huge tree."""
    held = [bytearray(1024 * 1024) for _ in range(megabytes)]
    return len(held)


def environment(data: bytes) -> list[str]:
    return sorted(os.environ)


def echo(data: bytes, **params: Any) -> dict[str, Any]:
    return {"size": len(data), "params": params}
