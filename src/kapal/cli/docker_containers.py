"""Container verbs of the `kapal` CLI (run, exec, logs, stats, top …), each a client of the Docker API,
with docker's flags, output and exit codes (125 daemon errors of run, 126/127 cannot run / not found,
otherwise the container's own code)."""

from __future__ import annotations

import os
import struct
import sys
import time

from kapal.engine.client import APIError, EngineClient, dumps, loads
from kapal.errors import EXIT_DAEMON_ERROR
from kapal.units import binary_size

from .docker import Parser, UsageError, _pull, client, human_size, parser, render_format, since, table
from .docker_flags import REMAINDER
from .docker_stream import RawTerminal, copy_output, copy_stdin, hijack, on_resize, terminal_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .docker_flags import Namespace


def _create(c: EngineClient, a: Namespace, detach: bool) -> str:
    from .docker_create import FlagError, container_body  # run and create only: ps, logs, exec … start without it

    try:
        body = container_body(a, detach)
    except FlagError as e:
        raise UsageError(str(e)) from None
    params = {"name": a.name}
    try:
        result = c.json("POST", "/containers/create", params, body)
    except APIError as e:
        if e.status != 404 or "No such image" not in e.message:
            raise
        from kapal.image.reference import parse

        ref = parse(a.image)
        shown = ref.tagged_or_latest().familiar() if not ref.digest else ref.familiar()
        print(f"Unable to find image '{shown}' locally", file=sys.stderr)
        _pull(a.image, out=sys.stderr, implicit=True)
        result = c.json("POST", "/containers/create", params, body)
    for warning in result.get("Warnings") or []:
        print(f"WARNING: {warning}", file=sys.stderr)
    return result["Id"]


def _start_error_exit(message: str) -> int:
    if "executable file not found" in message or "no such file or directory" in message:
        return 127
    if "permission denied" in message:
        return 126
    return EXIT_DAEMON_ERROR


class _Waiter:
    """POST /containers/ID/wait: the engine sends its headers at once, so the wait is in place before start (as
    the docker CLI has it), and its body when the condition holds."""

    def __init__(self, c: EngineClient, cid: str, condition: str) -> None:
        self.response = c.request("POST", f"/containers/{cid}/wait", {"condition": condition})

    def get(self) -> dict:
        try:
            raw = self.response.read()
        finally:
            self.response.close()
        return loads(raw) if raw.strip() else {}


def _proxy_signals(c: EngineClient, cid: str) -> Callable[[], None]:
    """Forward SIGINT/SIGTERM/SIGHUP to the container (docker's --sig-proxy, on without a terminal).

    Through _signal, the C module under `signal`: the enums of `signal` cost ~3 ms of every `kapal run`."""
    import _signal

    names = {_signal.SIGINT: "SIGINT", _signal.SIGTERM: "SIGTERM", _signal.SIGHUP: "SIGHUP"}

    def forward(signum: int, _frame: Any) -> None:
        try:
            c.json("POST", f"/containers/{cid}/kill", {"signal": names[signum]})
        except APIError:
            pass

    saved = {sig: _signal.signal(sig, forward) for sig in names}
    return lambda: [_signal.signal(sig, old) for sig, old in saved.items()]  # type: ignore[func-returns-value]


def cmd_run(argv: list[str]) -> int:
    p = Parser(prog="kapal run", description="Create and run a new container from an image", add_help=False)
    p.add_argument("--rm", action="store_true")
    p.add_argument("-d", "--detach", action="store_true")
    from .docker_create import add_flags

    add_flags(p)
    a = p.parse_args(argv)
    if a.tty and a.interactive and not sys.stdin.isatty():
        raise UsageError("the input device is not a TTY")
    c = client()
    cid = _create(c, a, a.detach)
    if a.detach:
        try:
            c.json("POST", f"/containers/{cid}/start")
        except APIError as e:
            print(f"kapal: Error response from daemon: {e.message}", file=sys.stderr)
            return _start_error_exit(e.message)
        print(cid)
        return 0
    params: dict[str, Any] = {"stderr": 1, "stdout": 1, "stream": 1}
    if a.interactive:
        params["stdin"] = 1
    if a.detach_keys:
        params["detachKeys"] = a.detach_keys
    sock, rest = hijack(c, f"/containers/{cid}/attach", params)
    waiter = _Waiter(c, cid, "removed" if a.rm else "next-exit")
    try:
        c.json("POST", f"/containers/{cid}/start")
    except APIError as e:
        sock.close()
        print(f"kapal: Error response from daemon: {e.message}", file=sys.stderr)
        if a.rm:
            try:
                c.json("DELETE", f"/containers/{cid}", {"force": True, "v": True})
            except APIError:
                pass
        return _start_error_exit(e.message)
    return _session(c, cid, sock, rest, a.tty, a.interactive, waiter, sig_proxy=a.sig_proxy != "false")


def _session(c: EngineClient, cid: str, sock, rest: bytes, tty: bool, interactive: bool, waiter: _Waiter | None,
             sig_proxy: bool = True) -> int:
    stop_resize: Callable[[], None] = lambda: None  # noqa: E731
    restore_signals: Callable[[], None] = lambda: None  # noqa: E731
    if tty and sys.stdout.isatty():
        stop_resize = on_resize(lambda h, w: c.json("POST", f"/containers/{cid}/resize", {"h": h, "w": w}))
    elif sig_proxy:
        restore_signals = _proxy_signals(c, cid)
    with RawTerminal(tty and interactive):
        if interactive:
            copy_stdin(sock)
        else:
            try:
                sock.shutdown(2 - 1)  # SHUT_WR: no stdin
            except OSError:
                pass
        error = copy_output(sock, rest, tty)
    sock.close()
    stop_resize()
    restore_signals()
    if error:
        print(f"error from daemon in stream: {error}", file=sys.stderr)
        return 1
    if waiter is None:
        return 0
    return int(waiter.get().get("StatusCode", 0))


def cmd_create(argv: list[str]) -> int:
    p = Parser(prog="kapal create", description="Create a new container", add_help=False)
    p.add_argument("--rm", action="store_true")
    from .docker_create import add_flags

    add_flags(p)
    a = p.parse_args(argv)
    print(_create(client(), a, detach=not (a.interactive or a.tty)))
    return 0


def cmd_start(argv: list[str]) -> int:
    p = parser("start", "Start one or more stopped containers")
    p.add_argument("-a", "--attach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)
    c = client()
    if a.attach or a.interactive:
        if len(a.containers) > 1:
            raise UsageError("you cannot start and attach multiple containers at once")
        info = c.json("GET", f"/containers/{a.containers[0]}/json")
        cid, tty = info["Id"], bool(info["Config"].get("Tty"))
        params: dict[str, Any] = {"stderr": 1, "stdout": 1, "stream": 1, **({"stdin": 1} if a.interactive else {})}
        sock, rest = hijack(c, f"/containers/{cid}/attach", params)
        waiter = _Waiter(c, cid, "next-exit")
        c.json("POST", f"/containers/{cid}/start")
        return _session(c, cid, sock, rest, tty, a.interactive, waiter)
    rc = 0
    for name in a.containers:
        try:
            c.json("POST", f"/containers/{name}/start")
            print(name)
        except APIError as e:
            print(f"Error response from daemon: {e.message}", file=sys.stderr)
            rc = 1
    return rc


def _each(argv: list[str], verb: str, description: str, fn: Callable[..., Any],
          extra: Callable[[Parser], None] | None = None) -> int:
    p = parser(verb, description)
    if extra:
        extra(p)
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)
    c = client()
    rc = 0
    for name in a.containers:
        try:
            fn(c, name, a)
            print(name)
        except APIError as e:
            print(f"Error response from daemon: {e.message}", file=sys.stderr)
            rc = 1
    return rc


def cmd_stop(argv: list[str]) -> int:
    def extra(p: Parser) -> None:
        p.add_argument("-t", "--time", "--timeout", type=int, default=None)
        p.add_argument("-s", "--signal", default=None)

    return _each(argv, "stop", "Stop one or more running containers",
                 lambda c, n, a: c.json("POST", f"/containers/{n}/stop", {"t": a.time, "signal": a.signal}), extra)


def cmd_restart(argv: list[str]) -> int:
    return _each(argv, "restart", "Restart one or more containers",
                 lambda c, n, a: c.json("POST", f"/containers/{n}/restart", {"t": a.time}),
                 lambda p: p.add_argument("-t", "--time", "--timeout", type=int, default=None))


def cmd_kill(argv: list[str]) -> int:
    return _each(argv, "kill", "Kill one or more running containers",
                 lambda c, n, a: c.json("POST", f"/containers/{n}/kill", {"signal": a.signal}),
                 lambda p: p.add_argument("-s", "--signal", default=None))


def cmd_update(argv: list[str]) -> int:
    from .docker_create import add_update_flags, update_body

    return _each(argv, "update", "Update configuration (resources, restart policy) of one or more containers",
                 lambda c, n, a: c.json("POST", f"/containers/{n}/update", None, update_body(a)), add_update_flags)


def cmd_pause(argv: list[str]) -> int:
    return _each(argv, "pause", "Pause all processes within one or more containers",
                 lambda c, n, a: c.json("POST", f"/containers/{n}/pause"))


def cmd_unpause(argv: list[str]) -> int:
    return _each(argv, "unpause", "Unpause all processes within one or more containers",
                 lambda c, n, a: c.json("POST", f"/containers/{n}/unpause"))


def cmd_rm(argv: list[str]) -> int:
    def extra(p: Parser) -> None:
        p.add_argument("-f", "--force", action="store_true")
        p.add_argument("-v", "--volumes", action="store_true")

    return _each(argv, "rm", "Remove one or more containers",
                 lambda c, n, a: c.json("DELETE", f"/containers/{n}", {"force": a.force or None,
                                                                      "v": a.volumes or None}), extra)


def cmd_rename(argv: list[str]) -> int:
    p = parser("rename", "Rename a container")
    p.add_argument("container")
    p.add_argument("new_name")
    a = p.parse_args(argv)
    client().json("POST", f"/containers/{a.container}/rename", {"name": a.new_name})
    return 0


def cmd_wait(argv: list[str]) -> int:
    p = parser("wait", "Block until one or more containers stop, then print their exit codes")
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)
    c = client()
    rc = 0
    for n in a.containers:
        try:
            print(c.json("POST", f"/containers/{n}/wait")["StatusCode"], flush=True)
        except APIError as e:
            print(f"Error response from daemon: {e.message}", file=sys.stderr)
            rc = 1
    return rc


def _ports_text(ports: list[dict]) -> str:
    out = []
    for p in sorted(ports, key=lambda p: (p.get("PrivatePort", 0), p.get("IP", ""))):
        if p.get("PublicPort"):
            out.append(f"{p.get('IP') or '0.0.0.0'}:{p['PublicPort']}->{p['PrivatePort']}/{p['Type']}")
        else:
            out.append(f"{p['PrivatePort']}/{p['Type']}")
    return ", ".join(out)


def cmd_ps(argv: list[str]) -> int:
    p = parser("ps", "List containers")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-s", "--size", action="store_true")
    p.add_argument("-n", "--last", type=int, default=-1)
    p.add_argument("-l", "--latest", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format", default=None)
    p.add_argument("-f", "--filter", action="append", default=[])
    a = p.parse_args(argv)
    filters: dict[str, dict[str, bool]] = {}
    for f in a.filter:
        k, _, v = f.partition("=")
        filters.setdefault(k, {})[v] = True
    limit = 1 if a.latest else a.last
    items = client().json(
        "GET",
        "/containers/json",
        {"all": (a.all or limit > 0) or None, "size": a.size or None, "limit": limit if limit > 0 else None,
         "filters": dumps(filters) if filters else None},
    )
    rows = []
    for it in items:
        cmd = it["Command"]
        if not a.no_trunc and len(cmd) > 20:
            cmd = cmd[:19] + "…"
        size = ""
        if a.size:
            size = f"{human_size(it.get('SizeRw', 0))} (virtual {human_size(it.get('SizeRootFs', 0))})"
        rows.append(
            {
                "ID": it["Id"] if a.no_trunc else it["Id"][:12],
                "Image": it["Image"],
                "Command": f'"{cmd}"',
                "RunningFor": since(it["Created"]),
                "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(it["Created"])),
                "Status": it["Status"],
                "State": it["State"],
                "Ports": _ports_text(it.get("Ports") or []),
                "Names": ",".join(n.lstrip("/") for n in it["Names"]),
                "Labels": ",".join(f"{k}={v}" for k, v in (it.get("Labels") or {}).items()),
                "Mounts": ",".join(m.get("Name") or m.get("Source", "") for m in it.get("Mounts") or []),
                "Size": size,
                "Networks": ",".join((it.get("NetworkSettings") or {}).get("Networks") or {}),
            }
        )
    if a.quiet:
        for r in rows:
            print(r["ID"])
        return 0
    if a.format:
        text = render_format(a.format, rows, {"ID": "CONTAINER ID", "RunningFor": "CREATED"})
        if text:
            print(text)
        return 0
    headers = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"] + (["SIZE"] if a.size else [])
    print(table(headers, [[r["ID"], r["Image"], r["Command"], r["RunningFor"], r["Status"], r["Ports"], r["Names"]]
                          + ([r["Size"]] if a.size else []) for r in rows]))
    return 0


def cmd_logs(argv: list[str]) -> int:
    p = parser("logs", "Fetch the logs of a container")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("-n", "--tail", default="all")
    p.add_argument("--since", default=None)
    p.add_argument("--until", default=None)
    p.add_argument("--details", action="store_true")
    p.add_argument("container")
    a = p.parse_args(argv)
    c = client()
    info = c.json("GET", f"/containers/{a.container}/json")
    params = {"stdout": 1, "stderr": 1, "follow": a.follow or None, "timestamps": a.timestamps or None,
              "tail": a.tail, "since": _relative_time(a.since), "until": _relative_time(a.until)}
    resp = c.request("GET", f"/containers/{info['Id']}/logs", params)
    tty = bool(info["Config"].get("Tty"))
    out, err = sys.stdout.buffer, sys.stderr.buffer
    buf = b""
    try:
        while True:
            chunk = resp.read1(65536)
            if not chunk:
                break
            if tty:
                out.write(chunk)
                out.flush()
                continue
            buf += chunk
            while len(buf) >= 8:
                stream, size = struct.unpack(">BxxxL", buf[:8])
                if len(buf) < 8 + size:
                    break
                target = err if stream == 2 else out
                target.write(buf[8 : 8 + size])
                target.flush()
                buf = buf[8 + size :]
    except KeyboardInterrupt:
        return 130
    finally:
        resp.close()
    return 0


def _relative_time(text: str | None) -> str | None:
    """docker's --since/--until: a duration ago (10m, 1h30m, 42s) or a timestamp, sent as unix seconds."""
    if not text:
        return None
    import re

    if re.fullmatch(r"(\d+(\.\d+)?(h|m|s|ms))+", text):
        seconds = 0.0
        for number, _, unit in re.findall(r"(\d+(\.\d+)?)(h|m|s|ms)", text):
            seconds += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
        return f"{time.time() - seconds:.9f}"
    return text


def cmd_exec(argv: list[str]) -> int:
    p = Parser(prog="kapal exec", description="Execute a command in a running container", add_help=False)
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-u", "--user", default="")
    p.add_argument("-w", "--workdir", default="")
    p.add_argument("--privileged", action="store_true")
    p.add_argument("--detach-keys", default="")
    p.add_argument("--help", action="help")
    p.add_argument("container")
    p.add_argument("command", nargs=REMAINDER)
    a = p.parse_args(argv)
    if not a.command:
        raise UsageError("exec requires at least 2 arguments")
    if a.tty and a.interactive and not sys.stdin.isatty():
        raise UsageError("the input device is not a TTY")
    c = client()
    c.json("GET", f"/containers/{a.container}/json")
    size = list(terminal_size()) if a.tty else [0, 0]
    body = {
        "User": a.user, "Privileged": a.privileged, "Tty": a.tty, "AttachStdin": a.interactive and not a.detach,
        "AttachStderr": not a.detach, "AttachStdout": not a.detach, "Detach": a.detach,
        "DetachKeys": a.detach_keys, "Env": a.env or None, "WorkingDir": a.workdir, "Cmd": a.command,
        **({"ConsoleSize": size} if a.tty else {}),
    }
    exec_id = c.json("POST", f"/containers/{a.container}/exec", body=body)["Id"]
    start = {"Detach": a.detach, "Tty": a.tty, **({"ConsoleSize": size} if a.tty else {})}
    if a.detach:
        c.json("POST", f"/exec/{exec_id}/start", body=start)
        return 0
    sock, rest = hijack(c, f"/exec/{exec_id}/start", {}, start)
    stop_resize: Callable[[], None] = lambda: None  # noqa: E731
    if a.tty and sys.stdout.isatty():
        stop_resize = on_resize(lambda h, w: c.json("POST", f"/exec/{exec_id}/resize", {"h": h, "w": w}))
    with RawTerminal(a.tty and a.interactive):
        if a.interactive:
            copy_stdin(sock)
        error = copy_output(sock, rest, a.tty)
    sock.close()
    stop_resize()
    if error:
        print(error, file=sys.stderr)
    code = c.json("GET", f"/exec/{exec_id}/json").get("ExitCode")
    return int(code) if code is not None else 0


def cmd_attach(argv: list[str]) -> int:
    p = parser("attach", "Attach local standard input, output, and error streams to a running container")
    p.add_argument("--no-stdin", action="store_true")
    p.add_argument("--detach-keys", default=None)
    p.add_argument("--sig-proxy", default="true")
    p.add_argument("container")
    a = p.parse_args(argv)
    c = client()
    info = c.json("GET", f"/containers/{a.container}/json")
    if not info["State"]["Running"]:
        raise UsageError("You cannot attach to a stopped container, start it first")
    interactive = not a.no_stdin and bool(info["Config"].get("OpenStdin"))
    tty = bool(info["Config"].get("Tty"))
    params: dict[str, Any] = {"stderr": 1, "stdout": 1, "stream": 1, **({"stdin": 1} if interactive else {})}
    if a.detach_keys:
        params["detachKeys"] = a.detach_keys
    sock, rest = hijack(c, f"/containers/{info['Id']}/attach", params)
    waiter = _Waiter(c, info["Id"], "next-exit")
    return _session(c, info["Id"], sock, rest, tty, interactive, waiter, sig_proxy=a.sig_proxy != "false")


def cmd_top(argv: list[str]) -> int:
    p = parser("top", "Display the running processes of a container")
    p.add_argument("container")
    p.add_argument("ps_args", nargs=REMAINDER)
    a = p.parse_args(argv)
    doc = client().json("GET", f"/containers/{a.container}/top", {"ps_args": " ".join(a.ps_args) or None})
    print(table(doc["Titles"], doc["Processes"]))
    return 0


def _cpu_percent(stats: dict) -> float:
    cpu, pre = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    system = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    if delta > 0 and system > 0:
        return delta / system * (cpu.get("online_cpus") or 1) * 100.0
    return 0.0


def stats_row(stats: dict) -> dict:
    mem = stats.get("memory_stats") or {}
    usage = mem.get("usage", 0) - (mem.get("stats") or {}).get("total_inactive_file", 0)
    limit = mem.get("limit", 0)
    nets = (stats.get("networks") or {}).values()
    rx, tx = sum(n.get("rx_bytes", 0) for n in nets), sum(n.get("tx_bytes", 0) for n in nets)
    io = (stats.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    rd = sum(e["value"] for e in io if e.get("op", "").lower() == "read")
    wr = sum(e["value"] for e in io if e.get("op", "").lower() == "write")
    return {
        "ID": stats.get("id", "")[:12],
        "Container": stats.get("id", "")[:12],
        "Name": (stats.get("name") or "").lstrip("/"),
        "CPUPerc": f"{_cpu_percent(stats):.2f}%",
        "MemUsage": f"{binary_size(usage)} / {binary_size(limit)}",
        "MemPerc": f"{(usage / limit * 100) if limit else 0:.2f}%",
        "NetIO": f"{human_size(rx)} / {human_size(tx)}",
        "BlockIO": f"{human_size(rd)} / {human_size(wr)}",
        "PIDs": str((stats.get("pids_stats") or {}).get("current", 0)),
    }


def cmd_stats(argv: list[str]) -> int:
    p = parser("stats", "Display a live stream of container(s) resource usage statistics")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("--no-stream", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format", default=None)
    p.add_argument("containers", nargs="*")
    a = p.parse_args(argv)
    c = client()
    names = a.containers or [it["Id"] for it in c.json("GET", "/containers/json", {"all": a.all or None})]
    headers = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"]
    previous: dict[str, dict] = {}
    while True:
        rows = []
        for name in names:
            try:
                doc = c.json("GET", f"/containers/{name}/stats", {"stream": 0, "one-shot": 1 if previous else None})
            except APIError as e:
                if a.containers:
                    raise
                print(f"Error response from daemon: {e.message}", file=sys.stderr)
                continue
            if name in previous:
                doc["precpu_stats"] = previous[name]["cpu_stats"]
            previous[name] = doc
            rows.append(stats_row(doc))
        if a.format:
            text = render_format(a.format, rows, {"CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT",
                                                  "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O"})
        else:
            text = table(headers, [[r["ID"], r["Name"], r["CPUPerc"], r["MemUsage"], r["MemPerc"], r["NetIO"],
                                    r["BlockIO"], r["PIDs"]] for r in rows])
        if a.no_stream:
            print(text)
            return 0
        if sys.stdout.isatty():
            sys.stdout.write("\x1b[2J\x1b[H")
        print(text, flush=True)
        try:
            time.sleep(1)
        except KeyboardInterrupt:
            return 0


def cmd_port(argv: list[str]) -> int:
    p = parser("port", "List port mappings or a specific mapping for the container")
    p.add_argument("container")
    p.add_argument("port", nargs="?")
    a = p.parse_args(argv)
    ports = client().json("GET", f"/containers/{a.container}/json")["NetworkSettings"].get("Ports") or {}
    wanted = a.port if not a.port or "/" in a.port else f"{a.port}/tcp"
    found = False
    for key, bindings in sorted(ports.items()):
        if wanted and key != wanted:
            continue
        for b in bindings or []:
            found = True
            print(f"{b['HostIp']}:{b['HostPort']}" if wanted else f"{key} -> {b['HostIp']}:{b['HostPort']}")
    if wanted and not found:
        print(f"Error: No public port '{wanted}' published for {a.container}", file=sys.stderr)
        return 1
    return 0


def cmd_diff(argv: list[str]) -> int:
    p = parser("diff", "Inspect changes to files or directories on a container's filesystem")
    p.add_argument("container")
    a = p.parse_args(argv)
    for ch in client().json("GET", f"/containers/{a.container}/changes") or []:
        print(f"{'CAD'[ch['Kind']]} {ch['Path']}")
    return 0


def cmd_commit(argv: list[str]) -> int:
    p = parser("commit", "Create a new image from a container's changes")
    p.add_argument("-a", "--author", default="")
    p.add_argument("-m", "--message", default="")
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-p", "--pause", default="true")
    p.add_argument("container")
    p.add_argument("reference", nargs="?")
    a = p.parse_args(argv)
    params: dict[str, Any] = {"container": a.container, "author": a.author, "comment": a.message,
                              "pause": a.pause != "false"}
    if a.change:
        params["changes"] = a.change
    if a.reference:
        from kapal.image.reference import parse

        ref = parse(a.reference)
        params["repo"], params["tag"] = ref.name, ref.tag or "latest"
    print(client().json("POST", "/commit", params)["Id"])
    return 0


def cmd_export(argv: list[str]) -> int:
    p = parser("export", "Export a container's filesystem as a tar archive")
    p.add_argument("-o", "--output", default=None)
    p.add_argument("container")
    a = p.parse_args(argv)
    if a.output is None and sys.stdout.isatty():
        raise UsageError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    resp = client().request("GET", f"/containers/{a.container}/export")
    out = open(a.output, "wb") if a.output else sys.stdout.buffer
    try:
        while chunk := resp.read(1 << 20):
            out.write(chunk)
    finally:
        if a.output:
            out.close()
        else:
            out.flush()
    return 0


def cmd_cp(argv: list[str]) -> int:
    """`kapal cp CONTAINER:SRC DEST|-` and `kapal cp SRC|- CONTAINER:DEST` (tar streams, as docker cp)."""
    p = parser("cp", "Copy files/folders between a container and the local filesystem")
    p.add_argument("-a", "--archive", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("src")
    p.add_argument("dest")
    a = p.parse_args(argv)
    c = client()
    import io
    import tarfile

    def split(arg: str) -> tuple[str | None, str]:
        if ":" in arg and not arg.startswith(("/", ".")):
            name, _, path = arg.partition(":")
            return name, path
        return None, arg

    src_c, src = split(a.src)
    dst_c, dst = split(a.dest)
    if (src_c is None) == (dst_c is None):
        raise UsageError("copying between containers or between local paths is not supported: "
                         "one of SRC and DEST must be CONTAINER:PATH")
    if src_c is not None:
        resp = c.request("GET", f"/containers/{src_c}/archive", {"path": src})
        data = resp.read()
        if dst == "-":
            sys.stdout.buffer.write(data)
            return 0
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            members = tar.getmembers()
            root = members[0].name.split("/")[0] if members else ""
            target = dst
            if os.path.isdir(dst):
                target = os.path.join(dst, root)
            for m in members:
                m.name = target + m.name[len(root):] if m.name.startswith(root) else os.path.join(target, m.name)
            tar.extractall("/", filter="tar" if not a.archive else "fully_trusted")
        return 0
    assert dst_c is not None
    if src == "-":
        body = sys.stdin.buffer.read()
    else:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            stat = None
            try:
                resp = c.request("HEAD", f"/containers/{dst_c}/archive", {"path": dst})
                stat = resp.getheader("X-Docker-Container-Path-Stat")
                resp.close()
            except APIError as e:
                if e.status != 404:
                    raise
            is_dir = False
            if stat:
                import base64

                is_dir = bool(loads(base64.b64decode(stat))["mode"] & (1 << 31))
            name = os.path.basename(src.rstrip("/")) if is_dir else os.path.basename(dst.rstrip("/"))
            tar.add(src, arcname=name)
            if not is_dir:
                dst = os.path.dirname(dst.rstrip("/")) or "/"
        body = buf.getvalue()
    c.request("PUT", f"/containers/{dst_c}/archive", {"path": dst, "noOverwriteDirNonDir": "true",
                                                      "copyUIDGID": a.archive or None}, body=body,
              headers={"Content-Type": "application/x-tar"}).close()
    return 0
