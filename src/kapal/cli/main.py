"""`kapal` entry point: dispatch a verb to its module without importing the others.

`kapal --help` must stay light: no asyncio, aiohttp or cryptography here.
"""

from __future__ import annotations

import sys

# verb -> (module under kapal.cli, one-line help). Modules define main(argv) -> int.
VERBS: dict[str, tuple[str, str]] = {
    # runtime and root filesystems
    "runtime": ("runtime", "OCI runtime with runc's command line (same as kapal-runtime)"),
    "rootfs": ("rootfs", "build a root filesystem: busybox, or programs from the host with their libraries"),
    # engine
    "engine": ("engine", "run the engine daemon (Docker Engine API on a unix socket)"),
    "run": ("docker", "create and run a container"),
    "create": ("docker", "create a container"),
    "start": ("docker", "start containers"),
    "stop": ("docker", "stop containers"),
    "restart": ("docker", "restart containers"),
    "kill": ("docker", "send a signal to containers"),
    "rm": ("docker", "remove containers"),
    "ps": ("docker", "list containers"),
    "exec": ("docker", "run a command in a running container"),
    "logs": ("docker", "show a container's logs"),
    "inspect": ("docker", "show low-level information on objects"),
    "top": ("docker", "show the processes of a container"),
    "stats": ("docker", "show containers' resource usage"),
    "pause": ("docker", "pause containers"),
    "unpause": ("docker", "unpause containers"),
    "wait": ("docker", "wait for containers to stop, print exit codes"),
    "diff": ("docker", "show changes to a container's filesystem"),
    "commit": ("docker", "create an image from a container's changes"),
    "export": ("docker", "export a container's filesystem as a tar"),
    "import": ("docker", "create an image from a rootfs tar"),
    "pull": ("docker", "pull an image from a registry"),
    "push": ("docker", "push an image to a registry"),
    "images": ("docker", "list images"),
    "rmi": ("docker", "remove images"),
    "tag": ("docker", "tag an image"),
    "history": ("docker", "show an image's history"),
    "volume": ("docker", "manage volumes"),
    "system": ("docker", "system information (df, info, events)"),
    "rename": ("docker", "rename a container"),
    "update": ("docker", "update a container's restart policy"),
    "port": ("docker", "list a container's published ports"),
    "cp": ("docker", "copy files between a container and the host"),
    "attach": ("docker", "attach to a running container"),
    "events": ("docker", "stream the engine's events"),
    "info": ("docker", "show the engine's information"),
    "network": ("docker", "list and inspect networks (bridge, host, none)"),
    # cluster
    "apiserver": ("apiserver", "run the Kubernetes-compatible API server"),
    "controller-manager": ("controlplane", "run the controllers"),
    "scheduler": ("controlplane", "run the scheduler"),
    "hollow-nodes": ("controlplane", "simulate N nodes (kubemark-style) for tests and benchmarks"),
    "kubelet": ("kubelet", "run the node agent"),
    "proxy": ("proxy", "program Services into iptables"),
    "dns": ("proxy", "serve cluster DNS for Services and Pods"),
    "up": ("up", "start a single-node cluster plus the engine"),
    "down": ("up", "stop the single-node cluster and clean up"),
    "adm": ("adm", "kubeadm-style init, reset, tokens, certificates"),
}


def _usage() -> str:
    width = max(len(v) for v in VERBS)
    lines = [
        "Usage: kapal [-H HOST] COMMAND [ARGS...]",
        "",
        "A container platform from the Linux primitives up.",
        "",
        "Options:",
        "  -H, --host HOST   engine socket (default $KAPAL_HOST or unix:///run/kapal/docker.sock)",
        "  -v, --version     print the version",
        "",
        "Commands:",
    ]
    lines += [f"  {verb.ljust(width)}  {text}" for verb, (_, text) in VERBS.items()]
    lines += ["", "Run 'kapal COMMAND --help' for more information on a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    host: str | None = None
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt in ("-h", "--help"):
            print(_usage())
            return 0
        if opt in ("-v", "--version"):
            from kapal import __version__

            print(f"kapal version {__version__}")
            return 0
        if opt in ("-H", "--host"):
            if not args:
                print("kapal: flag needs an argument: -H", file=sys.stderr)
                return 125
            host = args.pop(0)
        elif opt.startswith("--host="):
            host = opt.split("=", 1)[1]
        else:
            print(f"kapal: unknown flag: {opt}\nSee 'kapal --help'.", file=sys.stderr)
            return 125
    if not args:
        print(_usage())
        return 0
    verb = args.pop(0)
    entry = VERBS.get(verb)
    if entry is None:
        print(f"kapal: '{verb}' is not a kapal command.\nSee 'kapal --help'.", file=sys.stderr)
        return 125
    if host is not None:
        import os

        os.environ["KAPAL_HOST"] = host
    if sys.flags.no_site and entry[0] != "docker":
        import site  # the launcher skips site-packages, which only the docker verbs can do without

        site.main()
    module = __import__(f"kapal.cli.{entry[0]}", fromlist=["main"])  # importlib would cost ~0.5 ms more
    return int(module.main([verb, *args]) or 0)


def launch() -> None:
    """The entry of the `kapal` launcher (Makefile): main(), then a docker verb leaves without the interpreter's
    teardown, which costs ~1.5 ms after a `kapal ps` and does nothing those verbs need."""
    code = main()
    if "kapal.cli.docker" in sys.modules:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            sys.exit(code)
        import os

        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    sys.exit(main())
