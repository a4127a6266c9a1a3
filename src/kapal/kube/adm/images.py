"""The control-plane images, built on this host from the installed kapal and imported into the engine.

Why not copy Python into the image: the interpreter's standard library and the virtualenv are hundreds of
megabytes (the venv alone holds 370 MB, the Kubernetes JSON schemas among them), so a self-contained image
would cost seconds to build and import on every new kapal. Instead each image is the seed's bash-plus-`ldd`
recipe applied to Python: one small layer holding the system libraries that the interpreter and every C
extension need (`ldd` over `python3` and each `.so` of the standard library and the venv: libc, libssl,
libffi, libsqlite3, ...; a few MB), a root skeleton and a `kapal` command on the PATH. The interpreter's
prefix, the venv and kapal's source are not copied: the static-pod manifests bind-mount them read-only at
the same paths (`hostPath` volumes `kapal-python`, `kapal-venv`, `kapal-src`), so the container runs
exactly the kapal that wrote the manifest, and an edit to kapal needs no rebuild.

All components share that one layer; each gets its own reference named after it, as kubeadm's images
are (`kapal.local/kube-apiserver:v1.33.0`, ...). An image whose `io.kapal.fingerprint` label matches
the host's libraries and paths is reused; otherwise it is rebuilt and retagged.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kapal.errors import FailedPrecondition

from .config import InitConfig
from .constants import COREDNS, KUBE_APISERVER, KUBE_CONTROLLER_MANAGER, KUBE_PROXY, KUBE_SCHEDULER

FINGERPRINT_LABEL = "io.kapal.fingerprint"
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_SKIP_EXTENSIONS = ("_tkinter", "_curses_panel", "readline", "_curses", "nis")


@dataclass(frozen=True)
class PythonInstall:
    """Where the running kapal lives: what the manifests bind-mount into every control-plane container."""

    base_prefix: Path  # the interpreter's installation (bin/python3, lib/python3.X)
    venv: Path | None  # the virtualenv, when kapal runs from one
    source: Path | None  # kapal's package root when it lies outside both (an editable install)
    kapal_command: Path  # the `kapal` console script

    @classmethod
    def current(cls) -> PythonInstall:
        base = Path(sys.base_prefix).resolve()
        venv = Path(sys.prefix) if sys.prefix != sys.base_prefix else None
        import kapal

        package_root = Path(kapal.__file__).resolve().parent.parent
        inside = [p for p in (base, venv.resolve() if venv else None) if p and package_root.is_relative_to(p)]
        source = None if inside else package_root
        script = Path(sys.prefix) / "bin" / "kapal"
        if not script.exists():
            found = next((Path(p) / "kapal" for p in os.environ.get("PATH", "").split(":")
                          if (Path(p) / "kapal").exists()), None)
            if found is None:
                raise FailedPrecondition("the `kapal` command is not installed next to this interpreter "
                                         f"({sys.prefix}/bin/kapal) nor on PATH; install kapal with pip")
            script = found
        return cls(base, venv, source, script)

    def mounts(self) -> list[tuple[str, Path]]:
        """(volume name, host path) pairs, each mounted read-only at the same path in the container."""
        out = [("kapal-python", self.base_prefix)]
        if self.venv is not None:
            out.append(("kapal-venv", self.venv))
        if self.source is not None:
            out.append(("kapal-src", self.source))
        return out


def kapal_version() -> str:
    from kapal import __version__

    return __version__


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def addon_available(component: str) -> bool:
    """kube-proxy and CoreDNS are played by `kapal proxy` and `kapal dns` once this build has them (and adm
    knows how to deploy them)."""
    from .addons import DEPLOYABLE

    module = {KUBE_PROXY: "kapal.kube.proxy.app", COREDNS: "kapal.kube.dns.app"}[component]
    return component in DEPLOYABLE and _has_module(module)


def image_reference(cfg: InitConfig, component: str) -> str:
    repo = cfg.image_repository.rstrip("/")
    if component == COREDNS and (cfg.dns_image_repository or cfg.dns_image_tag):
        dns_repo = (cfg.dns_image_repository or repo).rstrip("/")
        return f"{dns_repo}/{COREDNS}:{cfg.dns_image_tag or cfg.kubernetes_version}"
    return f"{repo}/{component}:{cfg.kubernetes_version}"


def image_components(cfg: InitConfig) -> list[str]:
    """The components `config images list` names: the control plane and the add-ons this build has.

    There is no etcd image: kubeadm's "local etcd" is SQLite inside the API server here, and an external etcd
    is the user's to run.
    """
    out = [KUBE_APISERVER, KUBE_CONTROLLER_MANAGER, KUBE_SCHEDULER]
    if not cfg.proxy_disabled and addon_available(KUBE_PROXY):
        out.append(KUBE_PROXY)
    if not cfg.dns_disabled and addon_available(COREDNS):
        out.append(COREDNS)
    return out


def list_images(cfg: InitConfig) -> list[str]:
    return [image_reference(cfg, c) for c in image_components(cfg)]


# --- building ---------------------------------------------------------------------------------------------------------

def _shared_objects(install: PythonInstall) -> list[str]:
    roots = [Path(p) for p in sys.path if p.endswith(("lib-dynload", "site-packages")) and os.path.isdir(p)]
    out = []
    for root in roots:
        for dirpath, _, files in os.walk(root):
            for f in files:
                if (".so" in f) and not f.startswith(_SKIP_EXTENSIONS):
                    out.append(os.path.join(dirpath, f))
    return sorted(out)


def _ldd(paths: Iterable[str]) -> set[str]:
    """Every library `ldd` resolves for `paths` (the dynamic loader included)."""
    out: set[str] = set()
    paths = list(paths)
    for i in range(0, len(paths), 64):
        result = subprocess.run(["ldd", *paths[i:i + 64]], capture_output=True, text=True)
        for line in result.stdout.splitlines():
            line = line.strip()
            if line.endswith(":"):  # the "FILE:" heading ldd prints when given several files
                continue
            target = line.split("=>", 1)[1].strip().split(" ")[0] if "=>" in line else line.split(" ")[0]
            if target.startswith("/"):
                out.add(target)
    return out


@dataclass(frozen=True)
class ImageContent:
    """Host programs (copied with every library `ldd` names), whole directories and links an image carries
    beyond the Python base: kube-proxy's image adds iptables (nft backend) and its extension modules."""

    programs: tuple[str, ...] = ()
    directories: tuple[str, ...] = ()
    links: tuple[tuple[str, str], ...] = ()


BASE = ImageContent()


def iptables_content() -> ImageContent:
    multi = next((p for p in ("/usr/sbin/xtables-nft-multi", "/sbin/xtables-nft-multi") if os.path.exists(p)), None)
    if multi is None:
        raise FailedPrecondition("kube-proxy's image needs iptables with the nft backend (xtables-nft-multi); "
                                 "install Debian's iptables package")
    modules = next((str(p) for p in sorted(Path("/usr/lib").glob("*/xtables")) if p.is_dir()), None)
    names = ("iptables", "iptables-restore", "iptables-save", "ip6tables", "ip6tables-restore", "ip6tables-save")
    return ImageContent((multi,), (modules,) if modules else (),
                        tuple((f"/usr/sbin/{n}", "xtables-nft-multi") for n in names))


def image_content(component: str) -> ImageContent:
    return iptables_content() if component == KUBE_PROXY else BASE


def _inputs(install: PythonInstall, content: ImageContent) -> list[str]:
    """What `ldd` is asked about: the interpreter, every C extension, the content's programs and modules."""
    extra = list(content.programs)
    for d in content.directories:
        extra += sorted(str(p) for p in Path(d).iterdir() if p.is_file())
    return [str(Path(sys.executable).resolve()), *_shared_objects(install), *extra]


def host_files(install: PythonInstall, content: ImageContent = BASE) -> list[str]:
    """Host files of the image: the libraries the interpreter and its extensions load (outside the bind-mounted
    trees), plus the content's programs, directories and their libraries."""
    mounted = [str(p) for _, p in install.mounts()]
    inputs = _inputs(install, content)
    extra = set(inputs[1:]) - set(_shared_objects(install))
    libs = _ldd(inputs) | extra
    return sorted(p for p in libs if not any(p.startswith(m + "/") for m in mounted))


DPKG_STATUS = Path("/var/lib/dpkg/status")


def fingerprint(install: PythonInstall, content: ImageContent = BASE) -> str:
    """Changes when what the image would hold may change: kapal, the paths it is mounted from, the interpreter,
    any C extension or program, or the system's packages (dpkg's status file). Cheap: no `ldd`."""
    h = hashlib.sha256()
    h.update(f"{kapal_version()}|{install}|{sys.version}|{content}".encode())
    for f in [*_inputs(install, content), *([str(DPKG_STATUS)] if DPKG_STATUS.exists() else [])]:
        st = os.stat(f)
        h.update(f"|{f}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


class _LayerWriter:
    """A rootfs tar with host files at their own paths; symlinked directories (merged /usr) kept as links."""

    def __init__(self, fileobj: io.BufferedIOBase) -> None:
        self.tar = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT)
        self.done: set[str] = set()

    def _info(self, name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
        info = tarfile.TarInfo(name.lstrip("/"))
        info.type, info.mode, info.size, info.linkname = kind, mode, size, link
        info.mtime = int(time.time())
        return info

    def _claim(self, path: str) -> str | None:
        """The path with a symlinked parent resolved (the link itself stored), None when already stored;
        its parent directories are stored first."""
        parent = os.path.dirname(path)
        real_parent = os.path.realpath(parent)
        if real_parent != parent:
            self.directory(parent)
            path = os.path.join(real_parent, os.path.basename(path))
        if path in self.done:
            return None
        self.done.add(path)
        self.parents(path)
        return path

    def directory(self, path: str, mode: int = 0o755) -> None:
        if path in ("/", ""):
            return
        claimed = self._claim(path)
        if claimed is None:
            return
        path = claimed
        if os.path.islink(path):
            self.tar.addfile(self._info(path, tarfile.SYMTYPE, 0o777, link=os.readlink(path)))
            self.directory(os.path.realpath(path))
        else:
            self.tar.addfile(self._info(path, tarfile.DIRTYPE, mode))

    def parents(self, path: str) -> None:
        parent = os.path.dirname(path)
        if parent not in ("/", ""):
            self.directory(parent)

    def host_file(self, path: str) -> None:
        """Copy a host file to the same path; a symlinked parent (merged /usr) is kept as a link and the file
        stored under the directory it points to, so no tar entry goes through a link."""
        claimed = self._claim(path)
        if claimed is None:
            return
        path = claimed
        if os.path.islink(path):
            link = os.readlink(path)
            self.tar.addfile(self._info(path, tarfile.SYMTYPE, 0o777, link=link))
            self.host_file(os.path.normpath(os.path.join(os.path.dirname(path), link)))
            return
        st = os.stat(path)
        with open(path, "rb") as f:
            self.tar.addfile(self._info(path, tarfile.REGTYPE, st.st_mode & 0o7777, st.st_size), f)

    def text(self, path: str, content: str, mode: int = 0o644) -> None:
        self.done.add(path)
        self.parents(path)
        data = content.encode()
        self.tar.addfile(self._info(path, tarfile.REGTYPE, mode, len(data)), io.BytesIO(data))

    def symlink(self, path: str, target: str) -> None:
        self.done.add(path)
        self.parents(path)
        self.tar.addfile(self._info(path, tarfile.SYMTYPE, 0o777, link=target))

    def close(self) -> None:
        self.tar.close()


def write_layer(fileobj: io.BufferedIOBase, install: PythonInstall, files: list[str],
                content: ImageContent = BASE) -> None:
    """An image's one layer: skeleton, /etc basics, the host files, `kapal` on the PATH, the content's links."""
    w = _LayerWriter(fileobj)
    for d, mode in (("/bin", 0o755), ("/etc", 0o755), ("/proc", 0o555), ("/sys", 0o555), ("/dev", 0o755),
                    ("/run", 0o755), ("/var", 0o755), ("/var/run", 0o755), ("/root", 0o700), ("/tmp", 0o1777)):
        w.directory(d, mode)
    w.text("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    w.text("/etc/group", "root:x:0:\nnogroup:x:65534:\n")
    w.text("/etc/nsswitch.conf", "hosts: files dns\npasswd: files\ngroup: files\n")
    for f in files:
        w.host_file(f)
    for link, target in content.links:
        w.symlink(link, target)
    # a copy, not a link: the engine looks the command up in the image before the bind mounts exist; the
    # script's #! line names the venv's interpreter, which the kernel finds once the container runs
    w.text("/usr/local/bin/kapal", install.kapal_command.read_text(), 0o755)
    w.close()


def _engine_client(socket_path: Path):
    from kapal.engine.client import EngineClient

    return EngineClient(f"unix://{socket_path}")


def existing_fingerprint(client, reference: str) -> str | None:
    from kapal.engine.client import APIError

    try:
        info = client.json("GET", f"/images/{reference}/json")
    except APIError as e:
        if e.status == 404:
            return None
        raise
    return ((info.get("Config") or {}).get("Labels") or {}).get(FINGERPRINT_LABEL)


def ensure_images(cfg: InitConfig, engine_socket: Path, emit=lambda _line: None, say_reused: bool = True) -> list[str]:
    """Build (or reuse) the images of `image_components(cfg)` in the engine at `engine_socket`; returns them."""
    from kapal.engine.client import APIError, EngineUnavailable

    try:
        return _ensure_images(cfg, engine_socket, emit, say_reused)
    except (APIError, EngineUnavailable) as e:
        raise FailedPrecondition(f"building the images in the engine at unix://{engine_socket} failed: {e}") from e


def _ensure_images(cfg: InitConfig, engine_socket: Path, emit, say_reused: bool) -> list[str]:
    install = PythonInstall.current()
    client = _engine_client(engine_socket)
    groups: dict[ImageContent, list[str]] = {}
    for component in image_components(cfg):
        groups.setdefault(image_content(component), []).append(image_reference(cfg, component))
    built: list[str] = []
    for content, references in groups.items():
        fp = fingerprint(install, content)
        stale = [r for r in references if existing_fingerprint(client, r) != fp]
        if stale:
            _build(client, install, host_files(install, content), content, fp, stale)
            built += stale
    if built:
        emit(f"[preflight] Built {', '.join(built)} from the installed kapal (host libraries copied as `ldd` lists "
             "them; the interpreter, the venv and kapal are bind-mounted)")
    elif say_reused:
        emit("[preflight] Using the images already built from this kapal")
    return [r for refs in groups.values() for r in refs]


def _build(client, install: PythonInstall, files: list[str], content: ImageContent, fp: str,
           references: list[str]) -> None:
    buf = io.BytesIO()
    write_layer(buf, install, files, content)
    buf.seek(0)
    repo, _, tag = references[0].rpartition(":")
    changes = [f"ENV PATH={IMAGE_PATH}", f"LABEL {FINGERPRINT_LABEL}={fp}",
               "LABEL org.opencontainers.image.title=kapal-control-plane"]
    image_id = ""
    for msg in client.stream("POST", "/images/create", {"fromSrc": "-", "repo": repo, "tag": tag,
                                                        "changes": changes, "message": "kapal adm"}, body=buf):
        if str(msg.get("status", "")).startswith("sha256:"):
            image_id = msg["status"]
    for ref in references[1:]:
        r, _, t = ref.rpartition(":")
        client.json("POST", f"/images/{image_id or references[0]}/tag", {"repo": r, "tag": t})
