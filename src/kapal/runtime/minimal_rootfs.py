"""Root filesystems built from the host, with no network: busybox, or chosen programs and their libraries.

`busybox_rootfs` copies Debian's static busybox to bin/busybox and links
every applet to it with a *relative* symlink (`sh -> busybox`; `busybox
--install -s` would write absolute links that break inside a container).
`host_programs_rootfs` is the seed's recipe: copy the programs plus every
library `ldd` names, the dynamic loader included, at the same paths.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from kapal.errors import FailedPrecondition, Invalid, NotFound

BUSYBOX = "/bin/busybox"
SKELETON = ("proc", "sys", "dev", "etc", "tmp", "run", "root", "bin")


def _skeleton(root: str) -> None:
    for name in SKELETON:
        os.makedirs(os.path.join(root, name), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    os.chmod(os.path.join(root, "root"), 0o700)
    etc = os.path.join(root, "etc")
    passwd = os.path.join(etc, "passwd")
    if not os.path.exists(passwd):
        with open(passwd, "w") as f:
            f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    group = os.path.join(etc, "group")
    if not os.path.exists(group):
        with open(group, "w") as f:
            f.write("root:x:0:\ntty:x:5:\nnogroup:x:65534:\n")


def busybox_rootfs(root: str, busybox: str = BUSYBOX) -> list[str]:
    """Build a busybox rootfs in `root`; returns the applets linked."""
    if not os.path.isfile(busybox):
        raise NotFound(f"{busybox} not found: install Debian's busybox-static (make deps does)")
    _skeleton(root)
    target = os.path.join(root, "bin", "busybox")
    if os.path.islink(target):
        os.unlink(target)
    shutil.copy2(busybox, target)
    listing = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    applets = []
    for applet in listing:
        if applet == "busybox" or "/" in applet:
            continue
        link = os.path.join(root, "bin", applet)
        if os.path.lexists(link):
            if not os.path.islink(link):
                continue  # a real file is there: leave it
            os.unlink(link)
        os.symlink("busybox", link)
        applets.append(applet)
    return applets


def libraries(program: str) -> list[str]:
    """Absolute paths of the shared objects `ldd` says `program` needs (the loader included)."""
    result = subprocess.run(["ldd", program], capture_output=True, text=True)
    out = []
    for line in result.stdout.splitlines():
        line = line.strip()
        if "=>" in line:
            path = line.split("=>", 1)[1].strip().split(" ")[0]
        else:
            path = line.split(" ")[0]
        if path.startswith("/"):
            out.append(path)
    if result.returncode != 0 and "not a dynamic executable" not in result.stdout + result.stderr:
        raise FailedPrecondition(f"ldd {program} failed: {result.stderr.strip() or result.stdout.strip()}")
    return out


def _copy_preserving(path: str, root: str) -> None:
    """Copy `path` to the same path under `root`, recreating symlinks along the way (lib64 -> usr/lib64...)."""
    dest = os.path.join(root, path.lstrip("/"))
    parent = os.path.dirname(path)
    if parent not in ("/", ""):
        _mirror_dir(parent, root)
    if os.path.islink(path):
        if os.path.lexists(dest):
            os.unlink(dest)
        os.symlink(os.readlink(path), dest)
        target = os.path.join(os.path.dirname(path), os.readlink(path))
        _copy_preserving(os.path.normpath(target), root)
        return
    if os.path.lexists(dest):
        os.unlink(dest)
    shutil.copy2(path, dest)


def _mirror_dir(directory: str, root: str) -> None:
    """Make `directory` exist under root the way it exists on the host (a symlink stays a symlink)."""
    parent = os.path.dirname(directory)
    if parent not in ("/", ""):
        _mirror_dir(parent, root)
    dest = os.path.join(root, directory.lstrip("/"))
    if os.path.islink(directory):
        if not os.path.lexists(dest):
            os.symlink(os.readlink(directory), dest)
        target = os.path.normpath(os.path.join(os.path.dirname(directory), os.readlink(directory)))
        _mirror_dir(target, root)
    elif not os.path.lexists(dest):
        os.makedirs(dest, exist_ok=True)


def host_programs_rootfs(root: str, programs: list[str]) -> list[str]:
    """Copy `programs` and their libraries into `root`; returns every path copied."""
    if not programs:
        raise Invalid("from-host needs at least one program, e.g. /bin/bash /bin/ls")
    _skeleton(root)
    copied: list[str] = []
    for program in programs:
        path = program if program.startswith("/") else (shutil.which(program) or "")
        if not path or not os.path.isfile(path):
            raise NotFound(f"program {program!r} not found on the host")
        for item in [path, *libraries(path)]:
            if item not in copied:
                _copy_preserving(item, root)
                copied.append(item)
    return copied
