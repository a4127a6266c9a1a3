"""Docker-like verbs: each is a client of the engine's Docker API (`kapal -H` / KAPAL_HOST).

Output follows Docker's: the same columns, `-q`, `--format` Go templates
(`table` prefix included), progress bars on a terminal, and Docker's exit
codes (125 for usage and daemon errors of `run`, 1 for other failures,
otherwise the container's own code).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from kapal.engine.client import APIError, EngineClient, EngineUnavailable
from kapal.errors import EXIT_DAEMON_ERROR

# ------------------------------------------------------------------ plumbing


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}\nSee 'kapal {self.prog.split()[-1]} --help'.")


def parser(verb: str, description: str) -> Parser:
    return Parser(prog=f"kapal {verb}", description=description, add_help=True)


def die(message: str, code: int = 1) -> int:
    print(message, file=sys.stderr)
    return code


def human_size(size: float) -> str:
    """go-units HumanSizeWithPrecision(size, 3): decimal units, 3 significant digits."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.3g}{units[i]}"


def human_duration(seconds: float) -> str:
    """go-units HumanDuration."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def since(unix: float) -> str:
    return human_duration(time.time() - unix) + " ago"


def table(headers: list[str], rows: Iterable[list[str]]) -> str:
    """Docker's tabwriter(minwidth 10, padding 3)."""
    rows = [list(map(str, r)) for r in rows]
    widths = [len(h) for h in headers]
    for r in rows:
        for i, cell in enumerate(r):
            widths[i] = max(widths[i], len(cell))
    widths = [max(w + 3, 10) for w in widths]

    def line(cells: list[str]) -> str:
        out = "".join(c.ljust(widths[i]) for i, c in enumerate(cells[:-1])) + cells[-1]
        return out.rstrip()

    return "\n".join([line(headers)] + [line(r) for r in rows])


def render_format(fmt: str, items: list[dict], headers: dict[str, str] | None = None) -> str:
    """--format: a Go template per item; `table …` adds a header row from the field names."""
    from kapal.engine.gotemplate import Template, render

    fmt = fmt.replace("\\t", "\t").replace("\\n", "\n")
    if fmt.startswith("table"):
        body = fmt[len("table") :].strip() or "{{.ID}}"
        tpl = Template(body)
        head_data = {k: v for k, v in (headers or {}).items()}
        header = render(body, _HeaderData(head_data))
        lines = [header] + [tpl.render(item) for item in items]
        cells = [ln.split("\t") for ln in lines]
        width = max(len(c) for c in cells)
        return table([*(cells[0] + [""] * (width - len(cells[0])))], [c + [""] * (width - len(c)) for c in cells[1:]])
    tpl = Template(fmt)
    return "\n".join(tpl.render(item) for item in items)


class _HeaderData(dict):
    def get(self, key, default=None):  # type: ignore[override]
        return super().get(key, _upper_snake(key))


def _upper_snake(name: str) -> str:
    out = ""
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out += " "
        out += ch.upper()
    return out


def print_stream(messages: Iterable[dict], out=None) -> dict:
    """Docker's jsonmessage display: bars on a terminal, plain status lines otherwise. Returns the last aux."""
    out = out or sys.stdout
    tty = out.isatty()
    order: list[str] = []
    lines: dict[str, str] = {}
    aux: dict = {}
    for msg in messages:
        if "aux" in msg:
            aux = msg["aux"]
            continue
        status = msg.get("status", "")
        ident = msg.get("id")
        detail = msg.get("progressDetail") or {}
        if ident is None:
            print(status, file=out, flush=True)
            continue
        text = f"{ident}: {status}"
        if detail.get("total"):
            if not tty:
                continue
            text += " " + (msg.get("progress") or "")
        if not tty:
            print(text, file=out, flush=True)
            continue
        if ident not in lines:
            order.append(ident)
            lines[ident] = text
            print(text, file=out, flush=True)
            continue
        lines[ident] = text
        up = len(order) - order.index(ident)
        out.write(f"\x1b[{up}A\x1b[2K\r{text}\x1b[{up}B\r")
        out.flush()
    return aux


def client() -> EngineClient:
    return EngineClient()


def run_verb(fn: Callable[[list[str]], int], argv: list[str], daemon_exit: int = 1) -> int:
    try:
        return fn(argv)
    except UsageError as e:
        return die(f"kapal: {e}", EXIT_DAEMON_ERROR)
    except EngineUnavailable as e:
        return die(str(e), daemon_exit if daemon_exit != 1 else 1)
    except APIError as e:
        return die(f"Error response from daemon: {e.message}", daemon_exit)
    except Exception as e:
        from kapal.errors import KapalError

        if isinstance(e, KapalError):
            return die(f"kapal: {e}", daemon_exit)
        raise


# ------------------------------------------------------------------ images


def _split_repo_tag(text: str) -> tuple[str, str]:
    if "@" in text:
        return text, ""
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        return text[:colon], text[colon + 1 :]
    return text, ""


def _registry_auth(image: str) -> str:
    """X-Registry-Auth from the docker config (auths.<registry>.auth), else anonymous."""
    import base64

    from kapal.image.reference import parse

    config_dir = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
    try:
        with open(os.path.join(config_dir, "config.json")) as f:
            auths = json.load(f).get("auths", {})
    except (OSError, ValueError):
        auths = {}
    try:
        domain = parse(image).domain
    except Exception:
        domain = ""
    keys = [domain, f"https://{domain}", f"http://{domain}"]
    if domain == "docker.io":
        keys.append("https://index.docker.io/v1/")
    for key in keys:
        entry = auths.get(key)
        if entry and entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            doc = {"username": user, "password": password, "serveraddress": domain}
            return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()
    return "e30="


def cmd_pull(argv: list[str]) -> int:
    p = parser("pull", "Download an image from a registry")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--platform", default=None)
    p.add_argument("name")
    a = p.parse_args(argv)
    return _pull(a.name, a.quiet, a.platform)


def _pull(name: str, quiet: bool = False, platform: str | None = None, out=None, implicit: bool = False) -> int:
    from kapal.image.reference import parse

    out = out or sys.stdout
    ref = parse(name)
    if not ref.tag and not ref.digest:
        if not implicit:
            print("Using default tag: latest", file=out)
        ref = ref.tagged_or_latest()
    image = ref.name
    tag = ref.digest or ref.tag
    msgs = client().stream(
        "POST",
        "/images/create",
        {"fromImage": image, "tag": tag, "platform": platform},
        headers={"X-Registry-Auth": _registry_auth(image)},
    )
    if quiet:
        for _ in msgs:
            pass
    else:
        print_stream(msgs, out)
    print(str(ref), file=out)
    return 0


def cmd_push(argv: list[str]) -> int:
    p = parser("push", "Upload an image to a registry")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-a", "--all-tags", action="store_true")
    p.add_argument("name")
    a = p.parse_args(argv)
    from kapal.image.reference import parse

    ref = parse(a.name)
    if not ref.tag and not a.all_tags:
        print("Using default tag: latest")
        ref = ref.tagged_or_latest()
    msgs = client().stream(
        "POST",
        f"/images/{ref.name}/push",
        {"tag": ref.tag or None},
        headers={"X-Registry-Auth": _registry_auth(ref.name)},
    )
    if a.quiet:
        for _ in msgs:
            pass
        print(str(ref))
    else:
        print_stream(msgs)
    return 0


def _image_rows(images: list[dict], show_digests: bool, no_trunc: bool) -> list[dict]:
    rows = []
    for img in images:
        tags = img.get("RepoTags") or []
        digests = img.get("RepoDigests") or []
        pairs: list[tuple[str, str, str]] = []
        for t in tags:
            repo, tag = _split_repo_tag(t)
            dig = next((d.split("@", 1)[1] for d in digests if d.split("@")[0] == repo), "<none>")
            pairs.append((repo, tag, dig))
        if not tags:
            if digests:
                for d in digests:
                    repo, dig = d.split("@", 1)
                    pairs.append((repo, "<none>", dig))
            else:
                pairs.append(("<none>", "<none>", "<none>"))
        image_id = img["Id"] if no_trunc else img["Id"].removeprefix("sha256:")[:12]
        for repo, tag, dig in pairs:
            rows.append(
                {
                    "Repository": repo,
                    "Tag": tag,
                    "ID": image_id,
                    "Digest": dig,
                    "CreatedSince": since(img.get("Created", 0)),
                    "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(img.get("Created", 0))),
                    "Size": human_size(img.get("Size", 0)),
                    "Containers": "N/A",
                }
            )
    return rows


def cmd_images(argv: list[str]) -> int:
    p = parser("images", "List images")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--digests", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format", default=None)
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("reference", nargs="?")
    a = p.parse_args(argv)
    filters: dict[str, dict[str, bool]] = {}
    for f in a.filter:
        k, _, v = f.partition("=")
        filters.setdefault(k, {})[v] = True
    if a.reference:
        filters.setdefault("reference", {})[a.reference] = True
    images = client().json(
        "GET", "/images/json", {"all": a.all or None, "filters": json.dumps(filters) if filters else None}
    )
    rows = _image_rows(images, a.digests, a.no_trunc)
    if a.quiet:
        seen = []
        for r in rows:
            if r["ID"] not in seen:
                seen.append(r["ID"])
        print("\n".join(seen)) if seen else None
        return 0
    if a.format:
        text = render_format(a.format, rows, {"ID": "IMAGE ID", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT"})
        if text:
            print(text)
        return 0
    headers = ["REPOSITORY", "TAG"] + (["DIGEST"] if a.digests else []) + ["IMAGE ID", "CREATED", "SIZE"]
    body = [
        [r["Repository"], r["Tag"]] + ([r["Digest"]] if a.digests else []) + [r["ID"], r["CreatedSince"], r["Size"]]
        for r in rows
    ]
    print(table(headers, body))
    return 0


def cmd_rmi(argv: list[str]) -> int:
    p = parser("rmi", "Remove one or more images")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--no-prune", action="store_true")
    p.add_argument("images", nargs="+")
    a = p.parse_args(argv)
    rc = 0
    c = client()
    for name in a.images:
        try:
            result = c.json("DELETE", f"/images/{name}", {"force": a.force or None, "noprune": a.no_prune or None})
        except APIError as e:
            print(f"Error response from daemon: {e.message}", file=sys.stderr)
            rc = 1
            continue
        for item in result:
            for k, v in item.items():
                print(f"{k}: {v}")
    return rc


def cmd_tag(argv: list[str]) -> int:
    p = parser("tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE")
    p.add_argument("source")
    p.add_argument("target")
    a = p.parse_args(argv)
    from kapal.image.reference import parse

    target = parse(a.target)
    client().json("POST", f"/images/{a.source}/tag", {"repo": target.name, "tag": target.tag or "latest"})
    return 0


def cmd_history(argv: list[str]) -> int:
    p = parser("history", "Show the history of an image")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-H", "--human", default="true")
    p.add_argument("--format", default=None)
    p.add_argument("image")
    a = p.parse_args(argv)
    rows = client().json("GET", f"/images/{a.image}/history")
    items = []
    for r in rows:
        ident = r["Id"] if (a.no_trunc or r["Id"] == "<missing>") else r["Id"].removeprefix("sha256:")[:12]
        created_by = r.get("CreatedBy", "")
        if not a.no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        items.append(
            {
                "ID": ident,
                "CreatedSince": since(r.get("Created", 0)) if r.get("Created") else "N/A",
                "CreatedBy": created_by,
                "Size": human_size(r.get("Size", 0)),
                "Comment": r.get("Comment", ""),
            }
        )
    if a.quiet:
        print("\n".join(i["ID"] for i in items))
        return 0
    if a.format:
        print(render_format(a.format, items, {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedBy": "CREATED BY"}))
        return 0
    print(
        table(
            ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
            [[i["ID"], i["CreatedSince"], i["CreatedBy"], i["Size"], i["Comment"]] for i in items],
        )
    )
    return 0


def cmd_import(argv: list[str]) -> int:
    p = parser("import", "Import the contents from a tarball to create a filesystem image")
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-m", "--message", default="")
    p.add_argument("--platform", default=None)
    p.add_argument("file")
    p.add_argument("reference", nargs="?")
    a = p.parse_args(argv)
    params: dict[str, Any] = {"fromSrc": "-", "message": a.message or None, "changes": a.change or None}
    if a.reference:
        repo, tag = _split_repo_tag(a.reference)
        params["repo"], params["tag"] = repo, tag or None
    if a.file == "-":
        body = sys.stdin.buffer
        msgs = client().stream("POST", "/images/create", params, body=body)
    else:
        with open(a.file, "rb") as f:
            msgs = list(client().stream("POST", "/images/create", params, body=f))
    for msg in msgs:
        if msg.get("status", "").startswith("sha256:"):
            print(msg["status"])
    return 0


def cmd_inspect(argv: list[str]) -> int:
    p = parser("inspect", "Return low-level information on Docker objects")
    p.add_argument("-f", "--format", default=None)
    p.add_argument("-s", "--size", action="store_true")
    p.add_argument("--type", default=None, choices=["container", "image", "volume"])
    p.add_argument("names", nargs="+")
    a = p.parse_args(argv)
    from kapal.engine.gotemplate import Template

    tpl = Template(a.format) if a.format else None
    c = client()
    found: list[dict] = []
    rc = 0
    kinds = [a.type] if a.type else ["container", "image", "volume"]
    paths = {"container": "/containers/{}/json", "image": "/images/{}/json", "volume": "/volumes/{}"}
    for name in a.names:
        obj = None
        for kind in kinds:
            try:
                obj = c.json("GET", paths[kind].format(name))
                break
            except APIError as e:
                if e.status != 404:
                    raise
        if obj is None:
            print(f"Error: No such object: {name}", file=sys.stderr)
            rc = 1
            continue
        found.append(obj)
    if tpl is not None:
        for obj in found:
            print(tpl.render(obj))
    else:
        print(json.dumps(found, indent=4))
    return rc


# ------------------------------------------------------------------ volumes


def cmd_volume(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(
            "Usage: kapal volume COMMAND\n\nManage volumes\n\nCommands:\n  create   Create a volume\n"
            "  inspect  Display detailed information on one or more volumes\n  ls       List volumes\n"
            "  prune    Remove unused local volumes\n  rm       Remove one or more volumes"
        )
        return 0 if argv else 125
    sub, rest = argv[0], argv[1:]
    c = client()
    if sub == "create":
        p = parser("volume create", "Create a volume")
        p.add_argument("-d", "--driver", default="local")
        p.add_argument("--label", action="append", default=[])
        p.add_argument("-o", "--opt", action="append", default=[])
        p.add_argument("name", nargs="?")
        a = p.parse_args(rest)
        body = {
            "Driver": a.driver,
            "Name": a.name or "",
            "Labels": dict(lbl.partition("=")[::2] for lbl in a.label),
            "DriverOpts": dict(o.partition("=")[::2] for o in a.opt),
        }
        print(c.json("POST", "/volumes/create", body=body)["Name"])
        return 0
    if sub in ("ls", "list"):
        p = parser("volume ls", "List volumes")
        p.add_argument("-q", "--quiet", action="store_true")
        p.add_argument("--format", default=None)
        p.add_argument("-f", "--filter", action="append", default=[])
        a = p.parse_args(rest)
        vols = c.json("GET", "/volumes")["Volumes"] or []
        if a.quiet:
            for v in vols:
                print(v["Name"])
            return 0
        if a.format:
            print(render_format(a.format, vols, {"Name": "VOLUME NAME"}))
            return 0
        print(table(["DRIVER", "VOLUME NAME"], [[v["Driver"], v["Name"]] for v in vols]))
        return 0
    if sub == "inspect":
        p = parser("volume inspect", "Display detailed information on one or more volumes")
        p.add_argument("-f", "--format", default=None)
        p.add_argument("names", nargs="+")
        a = p.parse_args(rest)
        vols = [c.json("GET", f"/volumes/{n}") for n in a.names]
        if a.format:
            print(render_format(a.format, vols))
        else:
            print(json.dumps(vols, indent=4))
        return 0
    if sub in ("rm", "remove"):
        p = parser("volume rm", "Remove one or more volumes")
        p.add_argument("-f", "--force", action="store_true")
        p.add_argument("names", nargs="+")
        a = p.parse_args(rest)
        rc = 0
        for n in a.names:
            try:
                c.json("DELETE", f"/volumes/{n}", {"force": a.force or None})
                print(n)
            except APIError as e:
                print(f"Error response from daemon: {e.message}", file=sys.stderr)
                rc = 1
        return rc
    if sub == "prune":
        p = parser("volume prune", "Remove unused local volumes")
        p.add_argument("-a", "--all", action="store_true")
        p.add_argument("-f", "--force", action="store_true")
        a = p.parse_args(rest)
        res = c.json("POST", "/volumes/prune", {"all": a.all or None})
        if res["VolumesDeleted"]:
            print("Deleted Volumes:\n" + "\n".join(res["VolumesDeleted"]) + "\n")
        print(f"Total reclaimed space: {human_size(res['SpaceReclaimed'])}")
        return 0
    return die(f"kapal: 'volume {sub}' is not a kapal command.\nSee 'kapal volume --help'", EXIT_DAEMON_ERROR)


# ------------------------------------------------------------------ containers


def _hijack(c: EngineClient, path: str, params: dict) -> Any:
    """POST with Upgrade: tcp; returns the raw socket positioned after the 101 headers."""
    import socket

    if not c.host.startswith("unix://"):
        raise EngineUnavailable("attach needs a unix:// engine address")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(c.host[len("unix://") :])
    except (FileNotFoundError, ConnectionRefusedError) as e:
        raise c.unavailable(e) from None
    request = (
        f"POST {c.path(path, params)} HTTP/1.1\r\nHost: api.moby.localhost\r\nUser-Agent: kapal-cli\r\n"
        "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise APIError(500, "the engine closed the attach connection")
        head += chunk
    header, rest = head.split(b"\r\n\r\n", 1)
    status_line = header.split(b"\r\n", 1)[0].decode()
    status = int(status_line.split()[1])
    if status != 101:
        body = rest
        try:
            message = json.loads(body).get("message", "")
        except ValueError:
            message = body.decode(errors="replace")
        raise APIError(status, message or status_line)
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    return sock, rest


def _demux(sock: Any, rest: bytes) -> None:
    import struct

    buf = rest
    out, err = sys.stdout.buffer, sys.stderr.buffer
    while True:
        while len(buf) >= 8:
            stream, size = struct.unpack(">BxxxL", buf[:8])
            if len(buf) < 8 + size:
                break
            payload, buf = buf[8 : 8 + size], buf[8 + size :]
            target = err if stream == 2 else out
            target.write(payload)
            target.flush()
        chunk = sock.recv(65536)
        if not chunk:
            return
        buf += chunk


def _container_body(a: argparse.Namespace) -> dict:
    binds, volumes = [], {}
    for spec in a.volume:
        if ":" in spec and not spec.endswith((":ro", ":rw")) or spec.count(":") >= 2:
            binds.append(spec)
        elif ":" in spec and spec.split(":")[0].startswith("/") and spec.count(":") == 1:
            volumes[spec.split(":")[0]] = {}
        else:
            volumes[spec] = {}
    env = list(a.env)
    body: dict[str, Any] = {
        "Hostname": a.hostname or "",
        "User": a.user or "",
        "AttachStdin": False,
        "AttachStdout": not a.detach,
        "AttachStderr": not a.detach,
        "Tty": bool(a.tty),
        "OpenStdin": bool(a.interactive),
        "StdinOnce": bool(a.interactive),
        "Env": env or None,
        "Cmd": a.command or None,
        "Image": a.image,
        "Volumes": volumes,
        "WorkingDir": a.workdir or "",
        "Entrypoint": [a.entrypoint] if a.entrypoint is not None else None,
        "Labels": dict(lbl.partition("=")[::2] for lbl in a.label),
        "HostConfig": {
            "Binds": binds or None,
            "AutoRemove": bool(getattr(a, "rm", False)),
            "NetworkMode": a.network or "default",
        },
    }
    return body


def _add_create_flags(p: Parser) -> None:
    p.add_argument("--name", default=None)
    p.add_argument("-v", "--volume", action="append", default=[])
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-l", "--label", action="append", default=[])
    p.add_argument("-w", "--workdir", default=None)
    p.add_argument("-u", "--user", default=None)
    p.add_argument("-h", "--hostname", default=None)
    p.add_argument("--entrypoint", default=None)
    p.add_argument("--network", "--net", default=None)
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("--help", action="help")
    p.add_argument("image")
    p.add_argument("command", nargs=argparse.REMAINDER)


def _create(c: EngineClient, a: argparse.Namespace) -> str:
    body = _container_body(a)
    params = {"name": a.name}
    try:
        return c.json("POST", "/containers/create", params, body)["Id"]
    except APIError as e:
        if e.status != 404:
            raise
        from kapal.image.reference import parse

        ref = parse(a.image)
        shown = ref.tagged_or_latest().familiar() if not ref.digest else ref.familiar()
        print(f"Unable to find image '{shown}' locally", file=sys.stderr)
        _pull(a.image, out=sys.stderr, implicit=True)
        return c.json("POST", "/containers/create", params, body)["Id"]


def _start_error_exit(message: str) -> int:
    if "executable file not found" in message or "no such file or directory" in message:
        return 127
    if "permission denied" in message:
        return 126
    return EXIT_DAEMON_ERROR


def cmd_run(argv: list[str]) -> int:
    p = Parser(prog="kapal run", description="Create and run a new container from an image", add_help=False)
    p.add_argument("--rm", action="store_true")
    p.add_argument("-d", "--detach", action="store_true")
    _add_create_flags(p)
    a = p.parse_args(argv)
    if a.tty or a.interactive:
        raise UsageError("-t/--tty and -i/--interactive are not supported by kapal run yet")
    c = client()
    cid = _create(c, a)
    if a.detach:
        try:
            c.json("POST", f"/containers/{cid}/start")
        except APIError as e:
            print(f"kapal: Error response from daemon: {e.message}", file=sys.stderr)
            return _start_error_exit(e.message)
        print(cid)
        return 0
    import threading

    sock, rest = _hijack(c, f"/containers/{cid}/attach", {"stderr": 1, "stdout": 1, "stream": 1})
    result: dict = {}

    def waiter() -> None:
        try:
            result.update(c.json("POST", f"/containers/{cid}/wait", {"condition": "removed" if a.rm else "next-exit"}))
        except Exception as e:  # reported below
            result["error"] = e

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
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
    try:
        _demux(sock, rest)
    finally:
        sock.close()
    t.join()
    if "error" in result:
        raise result["error"]
    return int(result.get("StatusCode", 0))


def cmd_create(argv: list[str]) -> int:
    p = Parser(prog="kapal create", description="Create a new container", add_help=False)
    p.add_argument("--rm", action="store_true")
    _add_create_flags(p)
    a = p.parse_args(argv)
    a.detach = True
    print(_create(client(), a))
    return 0


def _each(argv: list[str], verb: str, fn: Callable[[EngineClient, str], None], extra: Callable | None = None) -> int:
    p = parser(verb, f"{verb} one or more containers")
    if extra:
        extra(p)
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)
    c = client()
    rc = 0
    for name in a.containers:
        try:
            fn(c, name) if not extra else fn(c, name, a)  # type: ignore[call-arg]
            print(name)
        except APIError as e:
            print(f"Error response from daemon: {e.message}", file=sys.stderr)
            rc = 1
    return rc


def cmd_start(argv: list[str]) -> int:
    return _each(argv, "start", lambda c, n: c.json("POST", f"/containers/{n}/start"))


def cmd_stop(argv: list[str]) -> int:
    return _each(
        argv,
        "stop",
        lambda c, n, a: c.json("POST", f"/containers/{n}/stop", {"t": a.time}),
        lambda p: p.add_argument("-t", "--time", type=int, default=None),
    )


def cmd_kill(argv: list[str]) -> int:
    return _each(
        argv,
        "kill",
        lambda c, n, a: c.json("POST", f"/containers/{n}/kill", {"signal": a.signal}),
        lambda p: p.add_argument("-s", "--signal", default=None),
    )


def cmd_rm(argv: list[str]) -> int:
    def extra(p: Parser) -> None:
        p.add_argument("-f", "--force", action="store_true")
        p.add_argument("-v", "--volumes", action="store_true")

    return _each(
        argv,
        "rm",
        lambda c, n, a: c.json("DELETE", f"/containers/{n}", {"force": a.force or None, "v": a.volumes or None}),
        extra,
    )


def cmd_wait(argv: list[str]) -> int:
    p = parser("wait", "Block until one or more containers stop, then print their exit codes")
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)
    c = client()
    rc = 0
    for n in a.containers:
        try:
            print(c.json("POST", f"/containers/{n}/wait")["StatusCode"])
        except APIError as e:
            print(f"Error response from daemon: {e.message}", file=sys.stderr)
            rc = 1
    return rc


def cmd_ps(argv: list[str]) -> int:
    p = parser("ps", "List containers")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format", default=None)
    p.add_argument("-f", "--filter", action="append", default=[])
    a = p.parse_args(argv)
    filters: dict[str, dict[str, bool]] = {}
    for f in a.filter:
        k, _, v = f.partition("=")
        filters.setdefault(k, {})[v] = True
    items = client().json(
        "GET", "/containers/json", {"all": a.all or None, "filters": json.dumps(filters) if filters else None}
    )
    rows = []
    for it in items:
        cmd = it["Command"]
        if not a.no_trunc and len(cmd) > 20:
            cmd = cmd[:19] + "…"
        rows.append(
            {
                "ID": it["Id"] if a.no_trunc else it["Id"][:12],
                "Image": it["Image"],
                "Command": f'"{cmd}"',
                "RunningFor": since(it["Created"]),
                "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(it["Created"])),
                "Status": it["Status"],
                "State": it["State"],
                "Ports": "",
                "Names": ",".join(n.lstrip("/") for n in it["Names"]),
                "Labels": ",".join(f"{k}={v}" for k, v in (it.get("Labels") or {}).items()),
                "Mounts": ",".join(m.get("Name") or m.get("Source", "") for m in it.get("Mounts") or []),
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
    print(
        table(
            ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"],
            [[r["ID"], r["Image"], r["Command"], r["RunningFor"], r["Status"], r["Ports"], r["Names"]] for r in rows],
        )
    )
    return 0


def cmd_logs(argv: list[str]) -> int:
    import struct

    p = parser("logs", "Fetch the logs of a container")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("container")
    a = p.parse_args(argv)
    resp = client().request(
        "GET", f"/containers/{a.container}/logs", {"stdout": 1, "stderr": 1, "follow": a.follow or None}
    )
    data = resp.read()
    while len(data) >= 8:
        stream, size = struct.unpack(">BxxxL", data[:8])
        target = sys.stderr.buffer if stream == 2 else sys.stdout.buffer
        target.write(data[8 : 8 + size])
        data = data[8 + size :]
    sys.stdout.flush()
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
    params: dict[str, Any] = {"container": a.container, "author": a.author, "comment": a.message}
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


# ------------------------------------------------------------------ dispatch

VERBS: dict[str, tuple[Callable[[list[str]], int], int]] = {
    "pull": (cmd_pull, 1),
    "push": (cmd_push, 1),
    "images": (cmd_images, 1),
    "rmi": (cmd_rmi, 1),
    "tag": (cmd_tag, 1),
    "history": (cmd_history, 1),
    "import": (cmd_import, 1),
    "inspect": (cmd_inspect, 1),
    "volume": (cmd_volume, 1),
    "run": (cmd_run, EXIT_DAEMON_ERROR),
    "create": (cmd_create, EXIT_DAEMON_ERROR),
    "start": (cmd_start, 1),
    "stop": (cmd_stop, 1),
    "kill": (cmd_kill, 1),
    "rm": (cmd_rm, 1),
    "wait": (cmd_wait, 1),
    "ps": (cmd_ps, 1),
    "logs": (cmd_logs, 1),
    "diff": (cmd_diff, 1),
    "commit": (cmd_commit, 1),
    "export": (cmd_export, 1),
}


def main(argv: list[str]) -> int:
    verb, rest = argv[0], argv[1:]
    entry = VERBS.get(verb)
    if entry is None:
        return die(f"kapal: '{verb}' is not implemented yet", EXIT_DAEMON_ERROR)
    fn, daemon_exit = entry
    try:
        return run_verb(fn, rest, daemon_exit)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
