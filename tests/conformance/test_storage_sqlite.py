"""What only the SQLite backend promises: its file survives the process, including a kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

from kapal.kube.storage.sqlite import SQLiteBackend


def test_reopen_keeps_values_revisions_and_history(tmp_path):
    async def first():
        b = SQLiteBackend(tmp_path / "s.db")
        kv = await b.create("/k/a", b"1")
        await b.update("/k/a", b"2", kv.mod_revision)
        await b.create("/k/b", b"x")
        await b.delete("/k/b")
        rev = await b.current_revision()
        await b.close()
        return rev

    async def second(rev):
        b = SQLiteBackend(tmp_path / "s.db")
        assert await b.current_revision() == rev
        assert (await b.get("/k/a")).value == b"2"
        events = []
        async for ev in b.watch("/k/", 0):
            events.append((ev.type, ev.kv.key))
            if len(events) == 4:
                break
        assert events == [("ADDED", "/k/a"), ("MODIFIED", "/k/a"), ("ADDED", "/k/b"), ("DELETED", "/k/b")]
        kv = await b.create("/k/c", b"c")
        assert kv.mod_revision == rev + 1
        await b.close()

    rev = asyncio.run(first())
    asyncio.run(second(rev))


def test_kill_9_loses_no_acknowledged_write(tmp_path):
    """A child writes and prints each revision after commit; whatever it printed must be there after kill -9."""
    script = textwrap.dedent(f"""
        import asyncio, sys
        from kapal.kube.storage.sqlite import SQLiteBackend
        async def main():
            b = SQLiteBackend({str(tmp_path / 's.db')!r})
            i = 0
            while True:
                kv = await b.create(f"/storm/{{i:06d}}", b"v" * 200)
                sys.stdout.write(f"{{i}} {{kv.mod_revision}}\\n"); sys.stdout.flush()
                i += 1
        asyncio.run(main())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    acked = []
    try:
        for line in proc.stdout:
            acked.append(line.split())
            if len(acked) >= 2000:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    async def check():
        b = SQLiteBackend(tmp_path / "s.db")
        for i, rev in acked:
            kv = await b.get(f"/storm/{int(i):06d}")
            assert kv is not None and kv.mod_revision == int(rev)
        await b.close()

    asyncio.run(check())
