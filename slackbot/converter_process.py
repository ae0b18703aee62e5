"""Running a document converter in a short-lived child process, with caps on memory and time.

PDFs and Office documents come from users, and their parsers (pypdf, python-docx, openpyxl,
python-pptx, lxml underneath) were not written to face hostile input: a crafted file can make
them spin or allocate without end. Each conversion therefore runs in a child process of its own:

- its address space is capped (`RLIMIT_AS`), so a file that expands in memory ends the child
  with a MemoryError, not the bot;
- it is killed when it takes longer than `timeout` seconds (and the kernel stops it past its CPU
  allowance), so it never stalls other replies, and the GIL it would hold is not the bot's;
- whatever it allocated is given back when it exits;
- the parsers' libraries are imported there only: the bot's own memory does not grow by them;
- it gets no environment but its import path, so no token or key is within its reach.

At most `max_concurrent` children run at once across the process; further files wait their turn.

The protocol: the parent writes one JSON line (`{"task": "module:function", "params": {…}}`)
and then the file's bytes to the child's stdin; the child calls `function(data, **params)` and
writes one JSON object to stdout: `{"ok": true, "result": …}`, or `{"ok": false, "problem": …,
"details": {…}}` for a `NotConvertible`. Anything else (a crash, a kill) is a failure the parent
names itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import resource
import sys
from collections.abc import Mapping
from typing import Any

from slackbot.errors import NotConvertible

logger = logging.getLogger(__name__)

MB = 1024 * 1024
DEFAULT_MAX_CONCURRENT = 2
DEFAULT_TIMEOUT_SECONDS = 30.0
#: The child's whole address space: the interpreter and the parsers take ~60 MB of it.
DEFAULT_MAX_MEMORY = 512 * MB
#: What a child may print: the text cap plus JSON escaping, with room to spare.
_MAX_OUTPUT = 64 * MB


class ConverterProcesses:
    """Runs converters in child processes; made once per bot, shared by every conversation."""

    def __init__(
        self,
        *,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_memory: int = DEFAULT_MAX_MEMORY,
    ) -> None:
        if max_concurrent < 1 or timeout <= 0 or max_memory < 64 * MB:
            raise ValueError("limits must be positive (and leave the interpreter 64 MB)")
        self.timeout = timeout
        self._max_memory = max_memory
        self._slots = asyncio.Semaphore(max_concurrent)

    async def run(self, task: str, data: bytes, params: Mapping[str, Any]) -> Any:
        """`task(data, **params)` in a child process: its result, or NotConvertible (the
        task's own, or `conversion_timed_out` / `conversion_failed`)."""
        request = json.dumps({"task": task, "params": dict(params)}).encode() + b"\n"
        async with self._slots:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                __name__,
                str(self._max_memory),
                str(max(1, int(self.timeout) + 1)),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=_child_environment(),
            )
            try:
                async with asyncio.timeout(self.timeout):
                    out, err = await process.communicate(request + data)
            except TimeoutError:
                logger.warning("converter %s took longer than %g s: killed", task, self.timeout)
                raise NotConvertible("conversion_timed_out", seconds=f"{self.timeout:g}") from None
            finally:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
        return _answer(task, process.returncode, out, err)


def _answer(task: str, returncode: int | None, out: bytes, err: bytes) -> Any:
    try:
        answer = json.loads(out[:_MAX_OUTPUT]) if out else None
    except ValueError:
        answer = None
    if returncode != 0 or not isinstance(answer, dict):
        logger.warning(
            "converter %s failed (exit %s): %s",
            task,
            returncode,
            err[-2000:].decode("utf-8", "replace").strip() or "no output",
        )
        raise NotConvertible("conversion_failed")
    if not answer.get("ok"):
        details = answer.get("details")
        raise NotConvertible(
            str(answer.get("problem")), **(details if isinstance(details, dict) else {})
        )
    return answer.get("result")


def _child_environment() -> dict[str, str]:
    """The child imports what the bot imports (its `sys.path`), and sees nothing else."""
    return {"PYTHONPATH": os.pathsep.join(path for path in sys.path if path), "LC_ALL": "C.UTF-8"}


# --- The child side


def _limit(max_memory: int, cpu_seconds: int) -> None:
    """Caps the child before it reads anything. Linux applies each; a system that refuses one
    (macOS refuses RLIMIT_AS below its own limit) still has the parent's kill on time."""
    for limit, soft, hard in (
        (resource.RLIMIT_AS, max_memory, max_memory),
        (resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1),
        (resource.RLIMIT_CORE, 0, 0),
    ):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(limit, (soft, hard))


def _call(task: str, data: bytes, params: dict[str, Any]) -> Any:
    module_name, _, function_name = task.partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    return function(data, **params)


def main(argv: list[str]) -> int:
    _limit(int(argv[0]), int(argv[1]))
    stdin = sys.stdin.buffer
    request = json.loads(stdin.readline())
    data = stdin.read()
    try:
        answer = {"ok": True, "result": _call(request["task"], data, request["params"])}
    except NotConvertible as exc:
        answer = {"ok": False, "problem": exc.problem, "details": exc.details}
    except MemoryError:
        answer = {"ok": False, "problem": "conversion_failed", "details": {}}
    sys.stdout.buffer.write(json.dumps(answer).encode())
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
