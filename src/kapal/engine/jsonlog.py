"""Docker's json-file log format: one JSON object per line, rotated by size.

A record is `{"log": TEXT, "stream": "stdout"|"stderr", "time": RFC 3339 with nanoseconds}`. As dockerd
does, a line longer than 16 KiB is cut into several records, and a line without its newline is held until
the newline comes, the buffer fills, or the stream ends. With `max_size`, the file rotates when the next
record would overflow it: LOG → LOG.1 → … → LOG.(max_files-1), the oldest dropped.

The writer runs inside the shim, whose start is on the path of every `docker run`: this module imports
only builtins at load time (`_json` encodes strings without pulling in `re`), the reader's json lazily.
"""

from __future__ import annotations

import os
import time
from _json import encode_basestring

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

MAX_LINE = 16 * 1024
STREAMS = {1: "stdout", 2: "stderr"}


def rfc3339_nano(ns: int) -> str:
    """2024-05-01T10:00:00.123456789Z (always nine digits: every parser here and in Docker reads it)."""
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


def docker_timestamp(ns: int) -> str:
    """Go's RFC3339Nano, as `docker logs -t` prints it: trailing zeros of the fraction dropped."""
    sec, frac = divmod(ns, 1_000_000_000)
    head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    digits = f"{frac:09d}".rstrip("0")
    return f"{head}.{digits}Z" if digits else f"{head}Z"


def parse_time_ns(text: str) -> int:
    """RFC 3339 (UTC `Z` or a numeric offset, any fraction) → nanoseconds since the epoch."""
    import calendar

    head, rest = text[:19], text[19:]
    secs = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
    frac = 0
    if rest.startswith("."):
        digits = ""
        for ch in rest[1:]:
            if not ch.isdigit():
                break
            digits += ch
        rest = rest[1 + len(digits) :]
        frac = int((digits + "000000000")[:9]) if digits else 0
    if rest and rest not in ("Z", "z"):
        sign = -1 if rest[0] == "-" else 1
        hh, mm = int(rest[1:3]), int(rest[4:6])
        secs -= sign * (hh * 3600 + mm * 60)
    return secs * 1_000_000_000 + frac


class JsonFileWriter:
    """Appends records for one container; `write()` takes raw chunks as the process wrote them."""

    def __init__(self, path: str, max_size: int = 0, max_files: int = 1) -> None:
        self.path = path
        self.max_size = max(0, int(max_size))
        self.max_files = max(1, int(max_files))
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._size = os.fstat(self._fd).st_size
        self._partial: dict[str, bytes] = {}

    def write(self, stream: str, data: bytes, now_ns: int | None = None) -> None:
        if not data:
            return
        stamp = rfc3339_nano(now_ns if now_ns is not None else time.time_ns())
        buf = self._partial.pop(stream, b"") + data
        out = []
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0 or nl - start >= MAX_LINE:
                if len(buf) - start >= MAX_LINE:
                    out.append(buf[start : start + MAX_LINE])
                    start += MAX_LINE
                    continue
                break
            out.append(buf[start : nl + 1])
            start = nl + 1
        if start < len(buf):
            self._partial[stream] = buf[start:]
        self._emit(stream, out, stamp)

    def flush_partial(self, now_ns: int | None = None) -> None:
        """End of the streams: write what is left of unterminated lines."""
        stamp = rfc3339_nano(now_ns if now_ns is not None else time.time_ns())
        for stream in list(self._partial):
            self._emit(stream, [self._partial.pop(stream)], stamp)

    def _emit(self, stream: str, lines: list[bytes], stamp: str) -> None:
        for line in lines:
            text = encode_basestring(line.decode("utf-8", "replace"))
            record = f'{{"log":{text},"stream":"{stream}","time":"{stamp}"}}\n'.encode()
            if self.max_size and self._size and self._size + len(record) > self.max_size:
                self._rotate()
            os.write(self._fd, record)
            self._size += len(record)

    def _rotate(self) -> None:
        os.close(self._fd)
        if self.max_files > 1:
            for n in range(self.max_files - 1, 0, -1):
                src = self.path if n == 1 else f"{self.path}.{n - 1}"
                try:
                    os.replace(src, f"{self.path}.{n}")
                except FileNotFoundError:
                    pass
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        else:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_TRUNC
        self._fd = os.open(self.path, flags, 0o640)
        self._size = 0

    def close(self) -> None:
        self.flush_partial()
        os.close(self._fd)


class LogRecord:
    __slots__ = ("stream", "data", "time_ns")

    def __init__(self, stream: str, data: bytes, time_ns: int) -> None:
        self.stream, self.data, self.time_ns = stream, data, time_ns

    def __repr__(self) -> str:
        return f"LogRecord({self.stream!r}, {self.data!r}, {self.time_ns})"


def parse_record(line: bytes) -> LogRecord | None:
    import json

    try:
        doc = json.loads(line)
        return LogRecord(doc["stream"], doc["log"].encode(), parse_time_ns(doc["time"]))
    except (ValueError, KeyError, TypeError):
        return None  # a line cut short by a crash or a full disk


def log_files(path: str) -> list[str]:
    """The files of one log, oldest first."""
    rotated = []
    n = 1
    while os.path.exists(f"{path}.{n}"):
        rotated.append(f"{path}.{n}")
        n += 1
    return [*reversed(rotated), path] if os.path.exists(path) else list(reversed(rotated))


def read_records(path: str, since_ns: int = 0, until_ns: int = 0, tail: int = -1) -> list[LogRecord]:
    """Every record in [since, until) across the rotated files; `tail` ≥ 0 keeps only the last N."""
    out: list[LogRecord] = []
    for name in log_files(path):
        try:
            with open(name, "rb") as f:
                for line in f:
                    rec = parse_record(line)
                    if rec is None or rec.time_ns < since_ns or (until_ns and rec.time_ns >= until_ns):
                        continue
                    out.append(rec)
        except FileNotFoundError:
            continue  # rotated away while reading
    if tail >= 0:
        out = out[len(out) - tail :] if tail else []
    return out


class LogFollower:
    """All records of a log, then those appended later, across rotations (`docker logs -f`).

    `backlog()` reads the rotated files and the current one as they are now; each `poll()` then yields
    what was appended since, reopening the file when the writer rotated it.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._f = None
        self._ino = 0
        self._buf = b""
        self._open_current()

    def _open_current(self) -> None:
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            self._f = None
            return
        self._f, self._ino, self._buf = f, os.fstat(f.fileno()).st_ino, b""

    def backlog(self) -> list[LogRecord]:
        out: list[LogRecord] = []
        for name in log_files(self.path)[:-1] if self._f is not None else log_files(self.path):
            try:
                with open(name, "rb") as f:
                    out += [r for r in map(parse_record, f) if r is not None]
            except FileNotFoundError:
                continue
        return out + list(self.poll())

    def poll(self) -> Iterator[LogRecord]:
        """Records written since the last call (complete lines only)."""
        if self._f is None:
            self._open_current()
            if self._f is None:
                return
        while True:
            chunk = self._f.read(1 << 16)
            if chunk:
                self._buf += chunk
                *lines, self._buf = self._buf.split(b"\n")
                for line in lines:
                    rec = parse_record(line)
                    if rec is not None:
                        yield rec
                continue
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                return
            if st.st_ino != self._ino or st.st_size < self._f.tell():
                self._f.close()  # rotated (or truncated): the new file is read from its start
                self._open_current()
                if self._f is None:
                    return
                continue
            return

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
