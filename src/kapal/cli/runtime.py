"""`kapal-runtime` / `kapal runtime`: the OCI runtime with runc's command line.

Global flags come before the command (--root, --log, --log-format, --debug,
--systemd-cgroup); command flags come before the container id (`exec` and
`ps` pass everything after the id on). Silent on success: whatever a runtime
prints during create/exec lands in the container's log. Errors: one line on
stderr, exit 1; with --log FILE --log-format json also exactly one JSON
object {"level":"error","msg":...,"time":...} in FILE, which podman reads.

Start-up is on the clock (podman, conmon and the engine run this once per
container): this module and what it imports avoid argparse, json, typing,
dataclasses, enum and ctypes.
"""

from __future__ import annotations

import os
import sys

from kapal.errors import KapalError, Unsupported

USAGE = """Usage: kapal-runtime [global options] COMMAND [command options] [arguments...]

An OCI runtime with runc's command line.

Commands:
  spec      write a default config.json in the bundle directory
  create    create a container (its init waits for start)
  start     start a created container
  run       create and start a container (foreground unless --detach)
  state     print a container's state as JSON
  kill      send a signal to a container's init (or --all processes)
  delete    delete a stopped container (--force: any container)
  exec      run a new process in a running container
  ps        list the processes of a container
  list      list containers
  pause     freeze every process of a container
  resume    thaw a paused container
  update    change a container's resource limits

Global options:
  --root DIR            state directory (default /run/kapal-runtime)
  --log FILE            write errors (and --debug messages) to FILE
  --log-format FORMAT   text (default) or json
  --debug               log debug messages
  --systemd-cgroup      not supported: there is no systemd here
  -v, --version         print the version
"""


class Usage(KapalError):
    """A command line kapal-runtime cannot parse."""


class Options:
    """Parsed flags of one command: values by canonical name, plus positionals."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.args: list[str] = []

    def get(self, name: str, default: object = None) -> object:
        return self.values.get(name, default)


# command -> {flag spelling: (canonical name, kind)}; kind: "bool", "str", "int", "list"
_CREATE = {
    "--bundle": ("bundle", "str"),
    "-b": ("bundle", "str"),
    "--console-socket": ("console-socket", "str"),
    "--pid-file": ("pid-file", "str"),
    "--no-pivot": ("no-pivot", "bool"),
    "--no-new-keyring": ("no-new-keyring", "bool"),
    "--preserve-fds": ("preserve-fds", "int"),
}
FLAGS: dict[str, dict[str, tuple[str, str]]] = {
    "spec": {"--bundle": ("bundle", "str"), "-b": ("bundle", "str"), "--rootless": ("rootless", "bool")},
    "create": _CREATE,
    "run": {
        **_CREATE,
        "--detach": ("detach", "bool"),
        "-d": ("detach", "bool"),
        "--keep": ("keep", "bool"),
        "--no-subreaper": ("no-subreaper", "bool"),
    },
    "start": {},
    "state": {},
    "kill": {"--all": ("all", "bool"), "-a": ("all", "bool")},
    "delete": {"--force": ("force", "bool"), "-f": ("force", "bool")},
    "exec": {
        "--process": ("process", "str"),
        "-p": ("process", "str"),
        "--tty": ("tty", "bool"),
        "-t": ("tty", "bool"),
        "--detach": ("detach", "bool"),
        "-d": ("detach", "bool"),
        "--pid-file": ("pid-file", "str"),
        "--console-socket": ("console-socket", "str"),
        "--preserve-fds": ("preserve-fds", "int"),
        "--env": ("env", "list"),
        "-e": ("env", "list"),
        "--cwd": ("cwd", "str"),
        "--user": ("user", "str"),
        "-u": ("user", "str"),
        "--additional-gids": ("additional-gids", "list"),
        "-g": ("additional-gids", "list"),
        "--cap": ("cap", "list"),
        "-c": ("cap", "list"),
        "--no-new-privs": ("no-new-privs", "bool"),
        "--apparmor": ("apparmor", "str"),
        "--process-label": ("process-label", "str"),
        "--cgroup": ("cgroup", "list"),
        "--ignore-paused": ("ignore-paused", "bool"),
    },
    "ps": {"--format": ("format", "str"), "-f": ("format", "str")},
    "list": {"--format": ("format", "str"), "-f": ("format", "str"), "--quiet": ("quiet", "bool"),
             "-q": ("quiet", "bool")},
    "pause": {},
    "resume": {},
    "update": {
        "--resources": ("resources", "str"),
        "-r": ("resources", "str"),
        "--memory": ("memory", "str"),
        "--memory-swap": ("memory-swap", "str"),
        "--memory-reservation": ("memory-reservation", "str"),
        "--cpu-shares": ("cpu-shares", "int"),
        "--cpu-quota": ("cpu-quota", "int"),
        "--cpu-period": ("cpu-period", "int"),
        "--cpuset-cpus": ("cpuset-cpus", "str"),
        "--cpuset-mems": ("cpuset-mems", "str"),
        "--pids-limit": ("pids-limit", "int"),
        "--blkio-weight": ("blkio-weight", "int"),
    },
}
# Commands whose arguments after the container id are passed on untouched.
_PASS_REST = ("exec", "ps")
_UNSUPPORTED_COMMANDS = ("checkpoint", "restore", "events", "features")


def parse(command: str, argv: list[str]) -> Options:
    table = FLAGS[command]
    opts = Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            opts.args.extend(argv[i:])
            break
        if not arg.startswith("-") or arg == "-":
            opts.args.append(arg)
            if command in _PASS_REST:
                opts.args.extend(argv[i:])
                break
            continue
        name, eq, inline = arg.partition("=")
        if name.startswith("--") is False and len(name) > 2 and not eq:
            # -dt: a cluster of short boolean flags
            shorts = [f"-{c}" for c in name[1:]]
            if all(table.get(s, ("", ""))[1] == "bool" for s in shorts):
                for s in shorts:
                    opts.values[table[s][0]] = True
                continue
        spec = table.get(name)
        if spec is None and name in ("-h", "--help"):
            opts.values["help"] = True  # as runc: VERB --help prints the verb's usage, whatever else is there
            continue
        if spec is None:
            raise Usage(f"{command}: unknown flag {name} (see 'kapal-runtime --help')")
        key, kind = spec
        if kind == "bool":
            opts.values[key] = inline.lower() not in ("false", "0") if eq else True
            continue
        if eq:
            value = inline
        else:
            if i >= len(argv):
                raise Usage(f"{command}: flag {name} needs a value")
            value = argv[i]
            i += 1
        if kind == "int":
            try:
                opts.values[key] = int(value)
            except ValueError:
                raise Usage(f"{command}: flag {name} wants a number, not {value!r}") from None
        elif kind == "list":
            opts.values.setdefault(key, []).append(value)  # type: ignore[union-attr]
        else:
            opts.values[key] = value
    return opts


# command -> its arguments after the flags, for `VERB --help`
_ARGUMENTS = {
    "spec": "",
    "create": "<container-id>",
    "run": "<container-id>",
    "start": "<container-id>",
    "state": "<container-id>",
    "kill": "<container-id> [signal]",
    "delete": "<container-id>",
    "exec": "<container-id> <command> [command options]  ||  -p process.json <container-id>",
    "ps": "<container-id> [ps options]",
    "list": "",
    "pause": "<container-id>",
    "resume": "<container-id>",
    "update": "<container-id>",
}


def verb_usage(command: str) -> str:
    """`kapal-runtime VERB --help`: the verb's synopsis, what it does (from USAGE) and its flags."""
    summary = next((line.split(None, 1)[1] for line in USAGE.splitlines()
                    if line.startswith("  ") and line.split(None, 1)[0] == command), "")
    by_name: dict[str, list[str]] = {}
    kinds: dict[str, str] = {}
    for spelling, (key, kind) in FLAGS[command].items():
        by_name.setdefault(key, []).append(spelling)
        kinds[key] = kind
    lines = [f"Usage: kapal-runtime {command} [command options] {_ARGUMENTS[command]}".rstrip(), "", summary, ""]
    lines.append("Options:")
    for key, spellings in by_name.items():
        value = {"bool": "", "int": " N", "list": " VALUE (repeatable)"}.get(kinds[key], " VALUE")
        lines.append(f"  {', '.join(sorted(spellings, key=len, reverse=True))}{value}")
    lines.append("  --help, -h  show this help")
    return "\n".join(lines)


class Globals:
    def __init__(self) -> None:
        self.root = "/run/kapal-runtime"
        self.log: str | None = None
        self.log_format = "text"
        self.debug = False


def _parse_globals(argv: list[str]) -> tuple[Globals, list[str]]:
    g = Globals()
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        name, eq, inline = argv[i].partition("=")
        i += 1
        value = None
        if name in ("--root", "--log", "--log-format", "--rootless", "--criu"):
            if eq:
                value = inline
            elif i < len(argv):
                value = argv[i]
                i += 1
            else:
                raise Usage(f"flag {name} needs a value")
        if name == "--root":
            g.root = value
        elif name == "--log":
            g.log = value
        elif name == "--log-format":
            if value not in ("text", "json"):
                raise Usage(f"--log-format {value!r}: want text or json")
            g.log_format = value
        elif name == "--debug":
            g.debug = True
        elif name == "--systemd-cgroup":
            raise Unsupported(
                "--systemd-cgroup: kapal-runtime manages cgroups through cgroupfs only and there is no systemd here; "
                "use the cgroupfs cgroup manager (podman --cgroup-manager cgroupfs)"
            )
        elif name == "--rootless":
            if value.lower() not in ("false", "auto"):
                raise Unsupported("--rootless: kapal-runtime runs as root only")
        elif name == "--criu":
            raise Unsupported("--criu: checkpoint/restore is not supported by kapal-runtime")
        elif name in ("-h", "--help"):
            return g, ["help"]
        elif name in ("-v", "--version"):
            return g, ["version"]
        else:
            raise Usage(f"unknown global flag {name} (see 'kapal-runtime --help')")
    return g, argv[i:]


def _timestamp() -> str:
    from kapal.runtime.state import rfc3339

    return rfc3339()


def _log(g: Globals, level: str, msg: str) -> None:
    if g.log is None:
        return
    if g.log_format == "json":
        from kapal.runtime import jsonio

        line = jsonio.dumps({"level": level, "msg": msg, "time": _timestamp()})
    else:
        escaped = msg.replace("\\", "\\\\").replace('"', '\\"')
        line = f'time="{_timestamp()}" level={level} msg="{escaped}"'
    try:
        fd = os.open(g.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
    except OSError:
        pass


def _one_id(command: str, opts: Options, extra_ok: int = 0) -> str:
    if not opts.args or len(opts.args) > 1 + extra_ok:
        want = "exactly 1 argument" if not extra_ok else f"1 to {1 + extra_ok} arguments"
        raise Usage(f'"{command}" requires {want}: the container id')
    return opts.args[0]


def _print(text: str) -> None:
    os.write(1, (text + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    """Entry point: `kapal-runtime ARGS` (argv None) or `kapal runtime ARGS` (argv[0] is the verb).

    As `kapal-runtime` it runs without the cyclic garbage collector and leaves
    with os._exit: the interpreter's tear-down of the loaded modules costs
    ~2.5 ms per container and frees nothing the kernel would not.
    """
    if argv is None:
        import gc

        gc.disable()  # a short-lived process: collections during the imports cost ~0.5 ms
    code = _main(sys.argv[1:] if argv is None else list(argv[1:]))
    if argv is None:
        os._exit(code)
    return code


def _main(args: list[str]) -> int:
    g = Globals()
    try:
        g, rest = _parse_globals(args)
        if not rest or rest[0] in ("help", "-h", "--help"):
            _print(USAGE.rstrip())
            return 0
        command = rest[0]
        if command in ("create", "run", "exec"):
            # A move into cgroup v2 may wait 5-20 ms (see kapal.linux.cgrouplock): if so, start the wait now.
            from kapal.linux import cgrouplock

            if cgrouplock.needed():
                cgrouplock.prime_migration_lock()
        if command == "version":
            return _version()
        if command in _UNSUPPORTED_COMMANDS:
            raise Unsupported(f"{command!r} is not supported by kapal-runtime")
        if command not in FLAGS:
            raise Usage(f"unknown command {command!r} (see 'kapal-runtime --help')")
        opts = parse(command, rest[1:])
        if opts.get("help"):
            _print(verb_usage(command))
            return 0
        if g.debug:
            _log(g, "debug", f"{command} {' '.join(rest[1:])}")
        return COMMANDS[command](g, opts)
    except KapalError as e:
        return _fail(g, str(e))
    except OSError as e:
        msg = e.strerror or str(e)
        if e.filename:
            msg = f"{e.filename}: {msg}"
        return _fail(g, msg)
    except KeyboardInterrupt:
        return 130


def _fail(g: Globals, msg: str) -> int:
    _log(g, "error", msg)
    try:
        os.write(2, f"kapal-runtime: {msg}\n".encode())
    except OSError:
        pass
    return 1


def _version() -> int:
    from kapal import __version__

    _print(f"kapal-runtime version {__version__}\nspec: 1.0.2-dev\npython: {sys.version.split()[0]}")
    return 0


def cmd_spec(g: Globals, opts: Options) -> int:
    from kapal.runtime import jsonio
    from kapal.runtime.spec import default_spec

    if opts.get("rootless"):
        raise Unsupported("spec --rootless: kapal-runtime runs as root only")
    bundle = str(opts.get("bundle") or ".")
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise KapalError(f"{path} exists; remove it first or use a different bundle directory")
    with open(path, "w") as f:
        f.write(jsonio.dumps(default_spec(), indent=2) + "\n")
    return 0


def _create_kwargs(opts: Options) -> dict:
    return {
        "console_socket": opts.get("console-socket"),
        "pid_file": opts.get("pid-file"),
        "preserve_fds": int(opts.get("preserve-fds") or 0),
        "no_pivot": bool(opts.get("no-pivot")),
        "no_new_keyring": bool(opts.get("no-new-keyring")),
    }


def cmd_create(g: Globals, opts: Options) -> int:
    from kapal.runtime import container

    cid = _one_id("create", opts)
    container.create(g.root, cid, str(opts.get("bundle") or "."), **_create_kwargs(opts))
    return 0


def cmd_run(g: Globals, opts: Options) -> int:
    from kapal.runtime import container

    cid = _one_id("run", opts)
    bundle = str(opts.get("bundle") or ".")
    if opts.get("detach"):
        container.run(g.root, cid, bundle, detach=True, **_create_kwargs(opts))
        return 0
    if opts.get("keep"):
        return _run_keep(g, cid, opts)
    return container.run(g.root, cid, bundle, forward_signals=True, **_create_kwargs(opts))


def _run_keep(g: Globals, cid: str, opts: Options) -> int:
    """run --keep: foreground, but leave the stopped container for `state`/`delete`."""
    from kapal.runtime import container

    pid = container.run(g.root, cid, str(opts.get("bundle") or "."), detach=True, **_create_kwargs(opts))
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            return container.exit_code(status)
        except InterruptedError:
            continue


def cmd_start(g: Globals, opts: Options) -> int:
    from kapal.runtime import container

    container.start(g.root, _one_id("start", opts))
    return 0


def cmd_state(g: Globals, opts: Options) -> int:
    from kapal.runtime import container, jsonio

    _print(jsonio.dumps(container.state(g.root, _one_id("state", opts)), indent=2))
    return 0


def cmd_kill(g: Globals, opts: Options) -> int:
    from kapal.linux import signals
    from kapal.runtime import container

    cid = _one_id("kill", opts, extra_ok=1)
    sig = signals.parse(opts.args[1]) if len(opts.args) > 1 else signals.SIGTERM
    container.kill(g.root, cid, sig, all_processes=bool(opts.get("all")))
    return 0


def cmd_delete(g: Globals, opts: Options) -> int:
    from kapal.runtime import container

    if not opts.args:
        raise Usage('"delete" requires at least 1 argument: the container id')
    for cid in opts.args:
        container.delete(g.root, cid, force=bool(opts.get("force")))
    return 0


def cmd_exec(g: Globals, opts: Options) -> int:
    from kapal.runtime import container
    from kapal.runtime.state import StateStore

    if not opts.args:
        raise Usage('"exec" requires at least 1 argument: the container id')
    for flag in ("apparmor", "process-label", "cgroup"):
        if opts.get(flag):
            raise Unsupported(f"exec --{flag} is not supported by kapal-runtime")
    cid, inline = opts.args[0], opts.args[1:]
    process_file = opts.get("process")
    if process_file:
        from kapal.runtime import jsonio

        with open(str(process_file), "rb") as f:
            process = jsonio.loads(f.read(), what=str(process_file))
        if not isinstance(process, dict):
            raise Usage(f"{process_file}: want a JSON object (an OCI process)")
        if opts.get("tty"):
            process["terminal"] = True
    else:
        if not inline:
            raise Usage("exec: give the command to run after the container id, or --process FILE")
        config = StateStore(g.root).load_config(cid)
        gids = []
        for value in opts.get("additional-gids") or []:
            try:
                gids.append(int(value))
            except ValueError:
                raise Usage(f"--additional-gids {value!r}: want a number") from None
        process = container.process_from_config(
            config,
            inline,
            env=opts.get("env"),  # type: ignore[arg-type]
            cwd=opts.get("cwd"),  # type: ignore[arg-type]
            user=opts.get("user"),  # type: ignore[arg-type]
            additional_gids=gids,
            terminal=bool(opts.get("tty")),
            capabilities=opts.get("cap"),  # type: ignore[arg-type]
            no_new_privileges=True if opts.get("no-new-privs") else None,
        )
    detach = bool(opts.get("detach"))
    code = container.exec_process(
        g.root,
        cid,
        process,
        console_socket=opts.get("console-socket"),  # type: ignore[arg-type]
        pid_file=opts.get("pid-file"),  # type: ignore[arg-type]
        detach=detach,
        preserve_fds=int(opts.get("preserve-fds") or 0),
        forward_signals=not detach,
    )
    return 0 if detach else code


def cmd_ps(g: Globals, opts: Options) -> int:
    from kapal.runtime import container, jsonio

    if not opts.args:
        raise Usage('"ps" requires the container id')
    cid, ps_args = opts.args[0], opts.args[1:]
    pids = container.ps(g.root, cid)
    fmt = opts.get("format") or "table"
    if fmt == "json":
        _print(jsonio.dumps(pids))
        return 0
    if fmt != "table":
        raise Usage(f"ps --format {fmt!r}: want table or json")
    import subprocess

    out = subprocess.run(["ps", *(ps_args or ["-ef"])], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise Usage("ps: the output of ps has no PID column")
    col = header.index("PID")
    keep = set(pids)
    _print(lines[0])
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in keep:
            _print(line)
    return 0


def cmd_list(g: Globals, opts: Options) -> int:
    from kapal.runtime import container, jsonio

    items = container.list_containers(g.root)
    if opts.get("quiet"):
        for item in items:
            _print(item["id"])
        return 0
    fmt = opts.get("format") or "table"
    if fmt == "json":
        _print(jsonio.dumps(items))
        return 0
    if fmt != "table":
        raise Usage(f"list --format {fmt!r}: want table or json")
    rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
    for item in items:
        rows.append([item["id"], str(item["pid"]), item["status"], item["bundle"], item["created"],
                     item["owner"] or "root"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        _print("   ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    return 0


def cmd_pause(g: Globals, opts: Options) -> int:
    from kapal.runtime import container

    container.pause(g.root, _one_id("pause", opts))
    return 0


def cmd_resume(g: Globals, opts: Options) -> int:
    from kapal.runtime import container

    container.resume(g.root, _one_id("resume", opts))
    return 0


def _bytes_value(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = text.strip().lower().rstrip("b")
    if t == "-1":
        return -1
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def cmd_update(g: Globals, opts: Options) -> int:
    from kapal.runtime import container, jsonio

    cid = _one_id("update", opts)
    resources: dict = {}
    source = opts.get("resources")
    if source:
        data = sys.stdin.buffer.read() if source == "-" else open(str(source), "rb").read()
        loaded = jsonio.loads(data, what=str(source))
        if not isinstance(loaded, dict):
            raise Usage(f"{source}: want a JSON object (OCI linux.resources)")
        resources = loaded
    cpu = resources.setdefault("cpu", {})
    mem = resources.setdefault("memory", {})
    for flag, key in (("cpu-shares", "shares"), ("cpu-quota", "quota"), ("cpu-period", "period"),
                      ("cpuset-cpus", "cpus"), ("cpuset-mems", "mems")):
        if opts.get(flag) is not None:
            cpu[key] = opts.get(flag)
    for flag, key in (("memory", "limit"), ("memory-swap", "swap"), ("memory-reservation", "reservation")):
        if opts.get(flag) is not None:
            mem[key] = _bytes_value(str(opts.get(flag)))
    if opts.get("pids-limit") is not None:
        resources["pids"] = {"limit": opts.get("pids-limit")}
    if opts.get("blkio-weight") is not None:
        resources.setdefault("blockIO", {})["weight"] = opts.get("blkio-weight")
    for key in ("cpu", "memory"):
        if not resources[key]:
            del resources[key]
    container.update(g.root, cid, resources)
    return 0


COMMANDS = {
    "spec": cmd_spec,
    "create": cmd_create,
    "run": cmd_run,
    "start": cmd_start,
    "state": cmd_state,
    "kill": cmd_kill,
    "delete": cmd_delete,
    "exec": cmd_exec,
    "ps": cmd_ps,
    "list": cmd_list,
    "pause": cmd_pause,
    "resume": cmd_resume,
    "update": cmd_update,
}
