"""Run a command in a container and wait for it: exec probes and lifecycle hooks."""

from __future__ import annotations

import asyncio

from .engineapi import EngineApi

MAX_OUTPUT = 16 * 1024


async def exec_sync(engine: EngineApi, cid: str, cmd: list[str], timeout: float | None) -> tuple[int, bytes]:
    """(exit code, combined output up to 16 KiB); TimeoutError when it runs longer than `timeout`."""
    exec_id = await engine.exec_create(cid, cmd, tty=False, stdin=False)
    stream = await engine.exec_start(exec_id, tty=False)
    out = bytearray()

    async def drain() -> None:
        while True:
            _, data = await stream.read()
            if not data:
                return
            if len(out) < MAX_OUTPUT:
                out.extend(data[:MAX_OUTPUT - len(out)])

    try:
        await asyncio.wait_for(drain(), timeout)
    finally:
        stream.close()
    info = await engine.exec_inspect(exec_id)
    for _ in range(50):  # the stream ends a moment before the engine records the exit code
        if not info.get("Running"):
            break
        await asyncio.sleep(0.02)
        info = await engine.exec_inspect(exec_id)
    code = info.get("ExitCode")
    return (int(code) if code is not None else -1), bytes(out)
