"""Docker-like verbs: each is a client of the engine's Docker API (`kapal -H` / KAPAL_HOST).

Output follows Docker's: the same columns, `-q`, `--format` Go templates
(`table` prefix included), progress bars on a terminal, and Docker's exit
codes (125 for usage and daemon errors of `run`, 1 for other failures,
otherwise the container's own code).
"""

from __future__ import annotations

import os
import sys
import time

from kapal.engine.client import APIError, EngineClient, EngineUnavailable, dumps, loads
from kapal.errors import EXIT_DAEMON_ERROR
from kapal.units import human_duration, human_size

from .docker_flags import FlagParser, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

# ------------------------------------------------------------------ plumbing

Parser = FlagParser


def parser(verb: str, description: str) -> Parser:
    return Parser(prog=f"kapal {verb}", description=description, add_help=True)


def die(message: str, code: int = 1) -> int:
    print(message, file=sys.stderr)
    return code


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
    import json

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
        "GET", "/images/json", {"all": a.all or None, "filters": dumps(filters) if filters else None}
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
        import json

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
            import json

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


# ------------------------------------------------------------------ system, events, networks


def cmd_system(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("Usage: kapal system COMMAND\n\nManage the engine\n\nCommands:\n  df       Show disk usage\n"
              "  info     Display system-wide information\n  events   Get real time events from the engine")
        return 0 if argv else 125
    sub, rest = argv[0], argv[1:]
    if sub == "df":
        return cmd_system_df(rest)
    if sub == "info":
        return cmd_info(rest)
    if sub == "events":
        return cmd_events(rest)
    raise UsageError(f"'{sub}' is not a system command (df, info, events)")


def cmd_system_df(argv: list[str]) -> int:
    p = parser("system df", "Show docker disk usage")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--format", default=None)
    a = p.parse_args(argv)
    df = client().json("GET", "/system/df")
    images, containers, volumes = df.get("Images") or [], df.get("Containers") or [], df.get("Volumes") or []
    image_size = df.get("LayersSize", 0)
    active_images = [i for i in images if i.get("Containers", 0) > 0]
    used = sum(i.get("Size", 0) - i.get("SharedSize", 0) for i in active_images)
    shared = max((i.get("SharedSize", 0) for i in active_images), default=0)
    reclaim_images = max(0, image_size - used - shared)
    c_size = sum(c.get("SizeRw", 0) for c in containers)
    c_reclaim = sum(c.get("SizeRw", 0) for c in containers if c.get("State") != "running")
    v_size = sum((v.get("UsageData") or {}).get("Size", 0) for v in volumes)
    v_reclaim = sum((v.get("UsageData") or {}).get("Size", 0) for v in volumes
                    if (v.get("UsageData") or {}).get("RefCount", 0) == 0)

    def pct(part: int, whole: int) -> str:
        return f"{human_size(part)} ({int(part * 100 / whole) if whole else 0}%)"

    rows = [
        {"Type": "Images", "TotalCount": str(len(images)), "Active": str(len(active_images)),
         "Size": human_size(image_size), "Reclaimable": pct(reclaim_images, image_size)},
        {"Type": "Containers", "TotalCount": str(len(containers)),
         "Active": str(sum(1 for c in containers if c.get("State") == "running")),
         "Size": human_size(c_size), "Reclaimable": pct(c_reclaim, c_size) if c_size else "0B (0%)"},
        {"Type": "Local Volumes", "TotalCount": str(len(volumes)),
         "Active": str(sum(1 for v in volumes if (v.get("UsageData") or {}).get("RefCount", 0) > 0)),
         "Size": human_size(v_size), "Reclaimable": pct(v_reclaim, v_size) if v_size else "0B (0%)"},
        {"Type": "Build Cache", "TotalCount": "0", "Active": "0", "Size": "0B", "Reclaimable": "0B"},
    ]
    if a.format:
        print(render_format(a.format, rows, {"TotalCount": "TOTAL", "Reclaimable": "RECLAIMABLE"}))
        return 0
    print(table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
                [[r["Type"], r["TotalCount"], r["Active"], r["Size"], r["Reclaimable"]] for r in rows]))
    if a.verbose:
        print("\nImages space usage:\n")
        print(table(["REPOSITORY", "TAG", "IMAGE ID", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"],
                    [[*(_split_repo_tag(i["RepoTags"][0]) if i.get("RepoTags") else ("<none>", "<none>")),
                      i["Id"][7:19], human_size(i.get("Size", 0)), human_size(i.get("SharedSize", 0)),
                      human_size(i.get("Size", 0) - i.get("SharedSize", 0)), str(i.get("Containers", 0))]
                     for i in images]))
        print("\nContainers space usage:\n")
        print(table(["CONTAINER ID", "IMAGE", "SIZE", "STATUS", "NAMES"],
                    [[c["Id"][:12], c["Image"], human_size(c.get("SizeRw", 0)), c["Status"],
                      ",".join(n.lstrip("/") for n in c["Names"])] for c in containers]))
        print("\nLocal Volumes space usage:\n")
        print(table(["VOLUME NAME", "LINKS", "SIZE"],
                    [[v["Name"], str((v.get("UsageData") or {}).get("RefCount", 0)),
                      human_size((v.get("UsageData") or {}).get("Size", 0))] for v in volumes]))
    return 0


def cmd_info(argv: list[str]) -> int:
    p = parser("info", "Display system-wide information")
    p.add_argument("-f", "--format", default=None)
    a = p.parse_args(argv)
    info = client().json("GET", "/info")
    if a.format:
        from kapal.engine.gotemplate import Template

        print(Template(a.format).render(info))
        return 0
    lines = [
        "Server:",
        f" Containers: {info.get('Containers', 0)}",
        f"  Running: {info.get('ContainersRunning', 0)}",
        f"  Paused: {info.get('ContainersPaused', 0)}",
        f"  Stopped: {info.get('ContainersStopped', 0)}",
        f" Images: {info.get('Images', 0)}",
        f" Server Version: {info.get('ServerVersion', '')}",
        f" Storage Driver: {info.get('Driver', '')}",
        f" Logging Driver: {info.get('LoggingDriver', '')}",
        f" Cgroup Driver: {info.get('CgroupDriver', '')}",
        f" Cgroup Version: {info.get('CgroupVersion', '')}",
        f" Default Runtime: {info.get('DefaultRuntime', '')}",
        f" Live Restore Enabled: {str(info.get('LiveRestoreEnabled', False)).lower()}",
        f" Kernel Version: {info.get('KernelVersion', '')}",
        f" Operating System: {info.get('OperatingSystem', '')}",
        f" CPUs: {info.get('NCPU', 0)}",
        f" Total Memory: {human_size(info.get('MemTotal', 0))}",
        f" Docker Root Dir: {info.get('DockerRootDir', '')}",
    ]
    for label in info.get("Labels") or []:
        lines.append(f" Label: {label}")
    print("\n".join(lines))
    for warning in info.get("Warnings") or []:
        print(warning, file=sys.stderr)
    return 0


def cmd_events(argv: list[str]) -> int:
    p = parser("events", "Get real time events from the server")
    p.add_argument("--since", default=None)
    p.add_argument("--until", default=None)
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format", default=None)
    a = p.parse_args(argv)
    from .docker_containers import _relative_time

    filters: dict[str, dict[str, bool]] = {}
    for f in a.filter:
        k, _, v = f.partition("=")
        filters.setdefault(k, {})[v] = True
    resp = client().request("GET", "/events", {"since": _relative_time(a.since), "until": _relative_time(a.until),
                                               "filters": dumps(filters) if filters else None})
    from kapal.engine.gotemplate import Template

    tpl = Template(a.format) if a.format else None
    buf = b""
    try:
        while True:
            chunk = resp.read1(65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if not line.strip():
                    continue
                ev = loads(line)
                if tpl is not None:
                    print(tpl.render(ev), flush=True)
                    continue
                when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ev["timeNano"] // 1_000_000_000))
                attrs = ", ".join(f"{k}={v}" for k, v in sorted((ev["Actor"].get("Attributes") or {}).items()))
                print(f"{when}.{ev['timeNano'] % 1_000_000_000:09d}Z {ev['Type']} {ev['Action']} "
                      f"{ev['Actor']['ID']}" + (f" ({attrs})" if attrs else ""), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        resp.close()
    return 0


def cmd_network(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("Usage: kapal network COMMAND\n\nManage networks\n\nCommands:\n  inspect  Display detailed "
              "information on one or more networks\n  ls       List networks")
        return 0 if argv else 125
    sub, rest = argv[0], argv[1:]
    c = client()
    if sub in ("ls", "list"):
        p = parser("network ls", "List networks")
        p.add_argument("-q", "--quiet", action="store_true")
        p.add_argument("--no-trunc", action="store_true")
        p.add_argument("--format", default=None)
        a = p.parse_args(rest)
        nets = c.json("GET", "/networks")
        rows = [{"ID": n["Id"] if a.no_trunc else n["Id"][:12], "Name": n["Name"], "Driver": n["Driver"],
                 "Scope": n["Scope"]} for n in nets]
        if a.quiet:
            print("\n".join(r["ID"] for r in rows))
        elif a.format:
            print(render_format(a.format, rows, {"ID": "NETWORK ID"}))
        else:
            print(table(["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
                        [[r["ID"], r["Name"], r["Driver"], r["Scope"]] for r in rows]))
        return 0
    if sub == "inspect":
        p = parser("network inspect", "Display detailed information on one or more networks")
        p.add_argument("-f", "--format", default=None)
        p.add_argument("names", nargs="+")
        a = p.parse_args(rest)
        nets = [c.json("GET", f"/networks/{n}") for n in a.names]
        import json

        print(render_format(a.format, nets) if a.format else json.dumps(nets, indent=4))
        return 0
    raise UsageError(f"'{sub}' is not supported: kapal has the networks bridge, host and none (ls, inspect)")


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
    "system": (cmd_system, 1),
    "info": (cmd_info, 1),
    "events": (cmd_events, 1),
    "network": (cmd_network, 1),
}
# container verbs live in docker_containers (imported when one of them runs)
CONTAINER_VERBS = {
    "run": EXIT_DAEMON_ERROR,
    "create": EXIT_DAEMON_ERROR,
    "start": 1,
    "stop": 1,
    "restart": 1,
    "kill": 1,
    "pause": 1,
    "unpause": 1,
    "update": 1,
    "rm": 1,
    "rename": 1,
    "wait": 1,
    "ps": 1,
    "logs": 1,
    "exec": 1,
    "attach": 1,
    "top": 1,
    "stats": 1,
    "port": 1,
    "diff": 1,
    "commit": 1,
    "export": 1,
    "cp": 1,
}


def main(argv: list[str]) -> int:
    verb, rest = argv[0], argv[1:]
    entry = VERBS.get(verb)
    if entry is None and verb in CONTAINER_VERBS:
        from . import docker_containers

        entry = (getattr(docker_containers, f"cmd_{verb}"), CONTAINER_VERBS[verb])
    if entry is None:
        return die(f"kapal: '{verb}' is not implemented yet", EXIT_DAEMON_ERROR)
    fn, daemon_exit = entry
    try:
        return run_verb(fn, rest, daemon_exit)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
