"""Docker's health checks: a container's HEALTHCHECK run by exec inside it, and State.Health kept as dockerd does.

`Config.Healthcheck` {Test, Interval, Timeout, StartPeriod, StartInterval, Retries} (nanoseconds) comes from
the image (HEALTHCHECK in a commit/import change or a pulled image) with the run's --health-* options over
it. Test is ["CMD", arg...], ["CMD-SHELL", command] (run by /bin/sh -c) or ["NONE"]. Each start sets
Health to `starting` (streak 0, log kept); a probe runs one interval after it (the start interval while
still starting within the start period). Exit 0 is healthy and resets the streak; anything else, a
timeout (the probe is killed) or an exec error counts a failure, except while starting within the start
period; `Retries` failures in a row (default 3) make it unhealthy. The last 5 results are kept with at
most 4096 bytes of output. Pause, exit and removal stop the checks; unpause resumes them.

One scheduler thread holds every container's next due time; probes run in a small pool through the
engine's exec machinery, so nothing blocks the event loop and an idle container costs a heap entry.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from kapal.errors import Invalid, KapalError

if TYPE_CHECKING:
    from .containers import Container, ContainerManager

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_START_PERIOD = 0.0
DEFAULT_START_INTERVAL = 5.0
DEFAULT_RETRIES = 3
MAX_LOG_ENTRIES = 5
MAX_OUTPUT = 4096
MIN_DURATION_NS = 1_000_000
STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"


def validate(check: dict | None) -> None:
    """dockerd's checks of a create's Healthcheck."""
    if not check:
        return
    for key in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        value = int(check.get(key) or 0)
        if value != 0 and value < MIN_DURATION_NS:
            raise Invalid(f"{key} in Healthcheck cannot be less than 1ms")
    if int(check.get("Retries") or 0) < 0:
        raise Invalid("Retries in Healthcheck cannot be negative")
    test = check.get("Test") or []
    if test and test[0] not in ("CMD", "CMD-SHELL", "NONE"):
        raise Invalid(f"invalid Healthcheck Test {test!r}: it starts with CMD, CMD-SHELL or NONE")


def merge(image: dict | None, user: dict | None) -> dict | None:
    """The container's Healthcheck: the run's settings over the image's, field by field (as dockerd)."""
    if not user:
        return dict(image) if image else None
    out = dict(user)
    for key in ("Test", "Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"):
        if not out.get(key) and (image or {}).get(key):
            out[key] = image[key]  # type: ignore[index]
    return out


def probe_command(check: dict | None) -> list[str] | None:
    test = list((check or {}).get("Test") or [])
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD" and len(test) > 1:
        return test[1:]
    if test[0] == "CMD-SHELL" and len(test) > 1:
        return ["/bin/sh", "-c", " ".join(test[1:])]
    return None


def go_duration(seconds: float) -> str:
    """A duration as Go prints it (200ms, 1s, 1m30s), for the timeout message dockerd writes."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    text = f"{rest:g}s"
    if minutes or hours:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return text


_UNITS_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
             "h": 3_600_000_000_000}


def parse_go_duration(text: str) -> int:
    """A Go duration ("200ms", "1m30s", "0") in nanoseconds, for HEALTHCHECK options and --health-*."""
    import re

    value = text.strip()
    sign = -1 if value.startswith("-") else 1
    value = value.lstrip("+-")
    if value == "0":
        return 0
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", value)
    if not value or not parts or "".join(n + u for n, u in parts) != value:
        raise Invalid(f'time: invalid duration "{text}"')
    return sign * round(sum(float(n) * _UNITS_NS[u] for n, u in parts))


def parse_instruction(rest: str) -> dict:
    """A HEALTHCHECK instruction's arguments (`NONE`, or `[--interval=D ...] CMD command`) as a Healthcheck."""
    import json

    words = rest.strip()
    options: dict = {}
    while words.startswith("--"):
        option, _, words = words.partition(" ")
        name, sep, value = option[2:].partition("=")
        key = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
               "start-interval": "StartInterval", "retries": "Retries"}.get(name)
        if key is None or not sep:
            raise Invalid(f"Unknown flag: {name}" if key is None else f"HEALTHCHECK --{name} needs a value")
        if key == "Retries":
            if not value.isdigit() or int(value) < 1:
                raise Invalid("--retries must be at least 1")
            options[key] = int(value)
        else:
            options[key] = parse_go_duration(value)
        words = words.lstrip()
    kind, _, command = words.partition(" ")
    kind = kind.upper()
    if kind == "NONE":
        if options or command.strip():
            raise Invalid("HEALTHCHECK NONE takes no arguments")
        return {"Test": ["NONE"]}
    if kind != "CMD" or not command.strip():
        raise Invalid("Unknown type \"" + kind + "\" in HEALTHCHECK (try CMD)" if kind != "CMD"
                      else "Missing command after HEALTHCHECK CMD")
    command = command.strip()
    test: list[str] | None = None
    if command.startswith("["):
        with contextlib.suppress(ValueError):
            parsed = json.loads(command)
            if isinstance(parsed, list) and parsed and all(isinstance(a, str) for a in parsed):
                test = ["CMD", *parsed]
    check = {"Test": test or ["CMD-SHELL", command]}
    check.update(options)
    validate(check)
    return check


def _seconds(check: dict, key: str, default: float) -> float:
    value = int(check.get(key) or 0)
    return value / 1e9 if value > 0 else default


class _Output:
    """The first 4096 bytes of a probe's stdout and stderr, "..." when cut (dockerd's limited buffer)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.truncated = False
        self.lock = threading.Lock()

    def write(self, _stream: int, data: bytes) -> None:
        with self.lock:
            keep = min(MAX_OUTPUT - len(self.data), len(data))
            if keep > 0:
                self.data += data[:keep]
            if keep < len(data):
                self.truncated = True

    def text(self) -> str:
        with self.lock:
            return self.data.decode(errors="replace") + ("..." if self.truncated else "")


class HealthMonitor:
    """Every container's health checks, on one scheduler thread and a small probe pool."""

    def __init__(self, containers: ContainerManager, now_iso: Callable[[], str], workers: int = 8) -> None:
        self.containers = containers
        self.now_iso = now_iso
        self._heap: list[tuple[float, int, str, object]] = []
        self._seq = itertools.count()
        self._tokens: dict[str, object] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._pool: ThreadPoolExecutor | None = None
        self._workers = workers
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle (callers hold c.lock)

    def started(self, c: Container) -> None:
        """A start (or a restore by a new engine, as dockerd): starting again, checks from now on."""
        if probe_command(c.doc["Config"].get("Healthcheck")) is None:
            c.state.pop("Health", None)
            return
        health = c.state.get("Health") or {"Log": []}
        health.update(Status=STARTING, FailingStreak=0)
        health.setdefault("Log", [])
        c.state["Health"] = health
        self.resume(c)

    def resume(self, c: Container) -> None:
        if "Health" not in c.state or probe_command(c.doc["Config"].get("Healthcheck")) is None:
            return
        token = object()
        with self._cond:
            if self._closed:
                return
            self._tokens[c.id] = token
            self._schedule(c, token)

    def stop(self, c: Container) -> None:
        with self._cond:
            self._tokens.pop(c.id, None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._tokens.clear()
            self._heap.clear()
            self._cond.notify_all()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ scheduling

    def _interval(self, c: Container) -> float:
        check = c.doc["Config"].get("Healthcheck") or {}
        interval = _seconds(check, "Interval", DEFAULT_INTERVAL)
        start_period = _seconds(check, "StartPeriod", DEFAULT_START_PERIOD)
        if time.monotonic() - (c.started_mono or 0) >= start_period:
            return interval
        if (c.state.get("Health") or {}).get("Status") == STARTING:
            return _seconds(check, "StartInterval", DEFAULT_START_INTERVAL)
        return interval

    def _schedule(self, c: Container, token: object) -> None:
        """Holds self._cond."""
        heapq.heappush(self._heap, (time.monotonic() + self._interval(c), next(self._seq), c.id, token))
        if self._thread is None:
            self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="health")
            self._thread = threading.Thread(target=self._run, name="health", daemon=True)
            self._thread.start()
        self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                if self._closed:
                    return
                _, _, cid, token = heapq.heappop(self._heap)
                if self._tokens.get(cid) is not token:
                    continue
            try:
                self._pool.submit(self._probe, cid, token)  # type: ignore[union-attr]
            except RuntimeError:
                return  # closed meanwhile

    # ------------------------------------------------------------ probes

    def _current(self, cid: str, token: object) -> bool:
        with self._cond:
            return self._tokens.get(cid) is token

    def _probe(self, cid: str, token: object) -> None:
        try:
            c = self.containers.get(cid)
        except KapalError:
            self.stop_id(cid)
            return
        check = c.doc["Config"].get("Healthcheck") or {}
        command = probe_command(check)
        if command is None or not self._current(cid, token):
            return
        timeout = _seconds(check, "Timeout", DEFAULT_TIMEOUT)
        start = self.now_iso()
        output = _Output()
        execs = self.containers.execs
        exec_id = ""
        try:
            exec_id = execs.create(cid, {"Cmd": command, "AttachStdout": True, "AttachStderr": True})["Id"]
            session = execs.start(exec_id, on_data=output.write)
            if session.done.wait(timeout):
                code, text = int(session.exit_code if session.exit_code is not None else -1), output.text()
            else:
                _kill(session)
                session.done.wait(5)
                code, text = -1, f"Health check exceeded timeout ({go_duration(timeout)})"
        except KapalError as e:
            code, text = -1, str(e)
        finally:
            if exec_id:
                execs.discard(exec_id)
        result = {"Start": start, "End": self.now_iso(), "ExitCode": code, "Output": text}
        self._record(c, token, result)

    def stop_id(self, cid: str) -> None:
        with self._cond:
            self._tokens.pop(cid, None)

    def _record(self, c: Container, token: object, result: dict) -> None:
        """dockerd's handleProbeResult: the log, the streak, the status, an event when it changes."""
        with c.lock:
            if not self._current(c.id, token) or "Health" not in c.state:
                return  # stopped, paused or restarted while the probe ran
            health = c.state["Health"]
            check = c.doc["Config"].get("Healthcheck") or {}
            old = health["Status"]
            health["Log"] = [*(health.get("Log") or []), result][-MAX_LOG_ENTRIES:]
            if result["ExitCode"] == 0:
                health.update(FailingStreak=0, Status=HEALTHY)
            else:
                in_start_period = old == STARTING and \
                    time.monotonic() - (c.started_mono or 0) < _seconds(check, "StartPeriod", DEFAULT_START_PERIOD)
                if not in_start_period:
                    health["FailingStreak"] = int(health.get("FailingStreak") or 0) + 1
                    if health["FailingStreak"] >= (int(check.get("Retries") or 0) or DEFAULT_RETRIES):
                        health["Status"] = UNHEALTHY
            c.save()
            new = health["Status"]
            with self._cond:
                if self._tokens.get(c.id) is token and not self._closed:
                    self._schedule(c, token)
        if new != old:
            self.containers._event(c, f"health_status: {new}")


def _kill(session) -> None:
    """SIGKILL a probe that ran out of time (through a pidfd: never a PID reused since it was reaped)."""
    try:
        fd = os.pidfd_open(session.pid)
    except OSError:
        return
    try:
        if session.running:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
    finally:
        os.close(fd)


def status_suffix(state: dict) -> str:
    """What `docker ps` adds to "Up 5 seconds": " (healthy)", " (health: starting)", " (unhealthy)"."""
    health = state.get("Health")
    if not health:
        return ""
    status = health.get("Status") or UNHEALTHY
    return " (health: starting)" if status == STARTING else f" ({status})"


def list_status(state: dict) -> str:
    """The `health` filter's value: starting, healthy, unhealthy or none."""
    health = state.get("Health")
    return (health.get("Status") or UNHEALTHY) if health else "none"
