"""The container's filesystem view, built inside its new mount namespace, then pivot_root.

Order (runc's): stop mount propagation to the host (rslave by default),
bind the rootfs onto itself, mount config.json's mounts in order (targets
created and resolved *inside* the rootfs, mounted through an O_PATH fd),
create /dev nodes and links, sysctls, read-only and masked paths (each
resolved inside the rootfs), pivot_root (or MS_MOVE + chroot with
--no-pivot) and detach the old root. After the pivot: a read-only root.
"""

from __future__ import annotations

import os
import stat

from kapal.errors import Invalid
from kapal.linux import libc
from kapal.linux import mount as m
from kapal.linux.devices import DEFAULT_DEVICES, Device
from kapal.linux.securepath import fd_path, open_in_root

_LINKS = (
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
)


class CgroupMount:
    """One hierarchy to show inside the container: its name under /sys/fs/cgroup and the host directory."""

    __slots__ = ("name", "host_dir", "aliases")

    def __init__(self, name: str, host_dir: str, aliases: tuple[str, ...] = ()) -> None:
        self.name = name
        self.host_dir = host_dir
        self.aliases = aliases


class RootfsPlan:
    __slots__ = ("rootfs", "bundle", "mounts", "devices", "readonly", "propagation", "masked", "readonly_paths",
                 "sysctl", "no_pivot", "cgroup_mounts", "cgroup_v2", "cgroup_ns")

    def __init__(self, spec: dict, rootfs: str, bundle: str, cgroup_mounts: list[CgroupMount], cgroup_v2: bool,
                 no_pivot: bool = False) -> None:
        linux = spec.get("linux") or {}
        self.rootfs = rootfs
        self.bundle = bundle
        self.mounts = []
        for entry in spec.get("mounts") or ():
            opts = m.parse_options(entry.get("options"))
            kind = entry.get("type") or ("bind" if opts.is_bind else "")
            if kind == "bind" and not opts.is_bind:
                opts.flags |= m.MS_BIND
            self.mounts.append((entry["destination"], kind, entry.get("source") or "", opts))
        self.devices = [Device.from_oci(d) for d in linux.get("devices") or ()]
        self.readonly = bool((spec.get("root") or {}).get("readonly"))
        propagation = linux.get("rootfsPropagation") or "rslave"
        if propagation not in m.PROPAGATION:
            raise Invalid(f"linux.rootfsPropagation {propagation!r}: want one of {', '.join(m.PROPAGATION)}")
        self.propagation = m.PROPAGATION[propagation]
        self.masked = list(linux.get("maskedPaths") or ())
        self.readonly_paths = list(linux.get("readonlyPaths") or ())
        self.sysctl = dict(linux.get("sysctl") or {})
        self.no_pivot = no_pivot
        self.cgroup_mounts = cgroup_mounts
        self.cgroup_v2 = cgroup_v2
        self.cgroup_ns = any(ns.get("type") == "cgroup" and not ns.get("path") for ns in linux.get("namespaces") or ())

    def binds_dev(self) -> bool:
        return any(dest.rstrip("/") == "/dev" and opts.is_bind for dest, _, _, opts in self.mounts)


def prepare(plan: RootfsPlan, terminal: bool, wait_for_cgroups=None) -> None:
    """Everything before the pivot; runs in the child, in its own mount namespace.

    `wait_for_cgroups` is called before the container's cgroup directories
    are bind-mounted. That mount goes last when nothing after it depends on
    it, so the child does all its other work while the cgroups are made.
    """
    rootfs = plan.rootfs
    m.mount(None, "/", None, plan.propagation)
    if plan.propagation & (m.MS_SHARED):
        _make_parent_private(rootfs)
    m.mount(rootfs, rootfs, None, m.MS_BIND | m.MS_REC)
    deferred = _deferrable_cgroup_mount(plan)
    for entry in plan.mounts:
        dest, kind, source, opts = entry
        if entry is deferred:
            continue
        if kind == "cgroup":
            if wait_for_cgroups is not None:
                wait_for_cgroups()
            _mount_cgroup(plan, dest, opts)
        else:
            _mount_entry(plan, dest, kind, source, opts)
    if not plan.binds_dev():
        _create_devices(rootfs, [*DEFAULT_DEVICES, *plan.devices])
        _create_dev_links(rootfs, terminal)
    elif plan.devices:
        _create_devices(rootfs, plan.devices)
    _write_sysctls(plan)
    for path in plan.readonly_paths:
        _readonly(rootfs, path)
    for path in plan.masked:
        _mask(rootfs, path)
    if deferred is not None:
        if wait_for_cgroups is not None:
            wait_for_cgroups()
        _mount_cgroup(plan, deferred[0], deferred[3])


def _deferrable_cgroup_mount(plan: RootfsPlan) -> tuple | None:
    """The cgroup mount, if moving it to the end changes nothing: no later mount, read-only or masked
    path lies under it or above it."""
    found = None
    for entry in plan.mounts:
        dest = entry[0].rstrip("/") or "/"
        if found is not None:
            other = found[0].rstrip("/")
            if dest == other or dest.startswith(other + "/") or other.startswith(dest + "/"):
                return None
        elif entry[1] == "cgroup":
            found = entry
    if found is None:
        return None
    base = found[0].rstrip("/")
    for path in (*plan.readonly_paths, *plan.masked):
        path = path.rstrip("/")
        if path == base or path.startswith(base + "/") or base.startswith(path + "/"):
            return None
    return found


def _make_parent_private(rootfs: str) -> None:
    parent = m.mountpoint_of(os.path.dirname(rootfs))
    if any(o.startswith("shared:") for o in parent.optional):
        m.mount(None, parent.mountpoint, None, m.MS_PRIVATE)


def _source_path(plan: RootfsPlan, source: str) -> str:
    return source if source.startswith("/") else os.path.join(plan.bundle, source)


def _mount_entry(plan: RootfsPlan, dest: str, kind: str, source: str, opts: m.MountOptions) -> None:
    rootfs = plan.rootfs
    if opts.is_bind:
        source = _source_path(plan, source)
        try:
            is_dir = stat.S_ISDIR(os.stat(source).st_mode)
        except FileNotFoundError:
            raise Invalid(f"mount {dest}: bind source {source} does not exist") from None
        fd = open_in_root(rootfs, dest, create="dir" if is_dir else "file")
        try:
            m.mount(source, fd_path(fd), None, opts.flags & (m.MS_BIND | m.MS_REC))
        finally:
            os.close(fd)
        extra = opts.flags & ~(m.MS_BIND | m.MS_REC | m.MS_REMOUNT)
        if extra:
            _on_target(rootfs, dest, lambda path: m.mount(None, path, None, m.MS_REMOUNT | m.MS_BIND | extra))
    else:
        fd = open_in_root(rootfs, dest, create="dir")
        before = None
        if "tmpcopyup" in opts.extensions:
            before = os.open(fd_path(fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            m.mount(source or kind, fd_path(fd), kind, opts.flags & ~m.MS_REMOUNT, opts.data)
        finally:
            os.close(fd)
        if before is not None:
            try:
                _on_target(rootfs, dest, lambda path: _copy_tree(fd_path(before), path))
            finally:
                os.close(before)
    for prop in opts.propagation:
        _on_target(rootfs, dest, lambda path, prop=prop: m.mount(None, path, None, prop))


def _on_target(rootfs: str, dest: str, action) -> None:
    """Run `action` on a fresh O_PATH handle of dest (so it sees what is mounted there now)."""
    fd = open_in_root(rootfs, dest)
    try:
        action(fd_path(fd))
    finally:
        os.close(fd)


def _copy_tree(src: str, dst: str) -> None:
    import shutil

    for name in os.listdir(src):
        s, d = src + "/" + name, dst + "/" + name
        if os.path.isdir(s) and not os.path.islink(s):
            shutil.copytree(s, d, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(s, d, follow_symlinks=False)
    st = os.stat(src)
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.chown(dst, st.st_uid, st.st_gid)


def _mount_cgroup(plan: RootfsPlan, dest: str, opts: m.MountOptions) -> None:
    rootfs = plan.rootfs
    flags = opts.flags & ~(m.MS_RDONLY | m.MS_BIND | m.MS_REC | m.MS_REMOUNT)
    if plan.cgroup_v2:
        fd = open_in_root(rootfs, dest, create="dir")
        try:
            if plan.cgroup_ns:
                m.mount("cgroup2", fd_path(fd), "cgroup2", opts.flags & ~m.MS_REMOUNT)
            else:
                m.mount(plan.cgroup_mounts[0].host_dir, fd_path(fd), None, m.MS_BIND | m.MS_REC)
        finally:
            os.close(fd)
        if opts.flags & m.MS_RDONLY and not plan.cgroup_ns:
            _on_target(rootfs, dest, lambda p: m.mount(None, p, None, m.MS_REMOUNT | m.MS_BIND | m.MS_RDONLY | flags))
        return
    fd = open_in_root(rootfs, dest, create="dir")
    try:
        m.mount("tmpfs", fd_path(fd), "tmpfs", flags, "mode=755")
    finally:
        os.close(fd)
    dir_fd = _dir_fd(rootfs, dest)
    try:
        for cg in plan.cgroup_mounts:
            os.mkdir(cg.name, 0o755, dir_fd=dir_fd)
            sub = os.open(cg.name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            try:
                m.mount(cg.host_dir, fd_path(sub), None, m.MS_BIND | m.MS_REC)
            finally:
                os.close(sub)
            for alias in cg.aliases:
                os.symlink(cg.name, alias, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    # One mount_setattr makes the tmpfs and every bind under it read-only (and nosuid...), instead of a
    # remount per hierarchy.
    _on_target(rootfs, dest, lambda p: _set_attrs(p, opts.flags))


def _set_attrs(path: str, flags: int) -> None:
    attrs = m.mount_attrs(flags)
    if not attrs:
        return
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        libc.mount_setattr(fd, attrs)
    except OSError as e:
        if e.errno != 38:  # ENOSYS: before Linux 5.12, remount each mount
            raise
        for info in m.mountinfo():
            if info.mountpoint == path or info.mountpoint.startswith(path + "/"):
                m.mount(None, info.mountpoint, None, m.MS_REMOUNT | m.MS_BIND | flags)
    finally:
        os.close(fd)


def _dir_fd(rootfs: str, path: str) -> int:
    opath = open_in_root(rootfs, path, create="dir")
    try:
        return os.open(fd_path(opath), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    finally:
        os.close(opath)


def _create_devices(rootfs: str, devices: list[Device]) -> None:
    dirs: dict[str, int] = {}
    try:
        for dev in devices:
            parent, name = os.path.split(dev.path)
            if parent not in dirs:
                dirs[parent] = _dir_fd(rootfs, parent)
            dir_fd = dirs[parent]
            try:
                os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
            except IsADirectoryError:
                raise Invalid(f"device {dev.path}: a directory is in the way") from None
            try:
                dev.create_at(dir_fd, name)
            except PermissionError:
                _bind_host_device(dir_fd, name, dev)
    finally:
        for fd in dirs.values():
            os.close(fd)


def _bind_host_device(dir_fd: int, name: str, dev: Device) -> None:
    """Without CAP_MKNOD: bind-mount the host's node instead."""
    os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd))
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        m.mount(dev.path, fd_path(fd), None, m.MS_BIND)
    finally:
        os.close(fd)


def _create_dev_links(rootfs: str, terminal: bool) -> None:
    dev = _dir_fd(rootfs, "/dev")
    try:
        for target, link in (*_LINKS, ("pts/ptmx", "/dev/ptmx")):
            name = link[len("/dev/") :]
            try:
                os.unlink(name, dir_fd=dev)
            except FileNotFoundError:
                pass
            except IsADirectoryError:
                continue
            os.symlink(target, name, dir_fd=dev)
        if terminal:
            try:
                os.close(os.open("console", os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                                 dir_fd=dev))
            except FileExistsError:
                pass
    finally:
        os.close(dev)


def pivot(plan: RootfsPlan) -> None:
    """Make the rootfs `/`: pivot_root(".", ".") and lazily detach the old root, or MS_MOVE + chroot."""
    os.chdir(plan.rootfs)
    if plan.no_pivot:
        _detach_outside(plan.rootfs)
        m.mount(plan.rootfs, "/", None, m.MS_MOVE)
        os.chroot(".")
    else:
        libc.pivot_root(".", ".")
        m.mount(None, ".", None, m.MS_SLAVE | m.MS_REC)
        m.umount(".", m.MNT_DETACH)
    os.chdir("/")


def _detach_outside(rootfs: str) -> None:
    """Before MS_MOVE+chroot: unmount what lies outside the rootfs, so it is not reachable by escaping chroot."""
    for info in sorted(m.mountinfo(), key=lambda i: len(i.mountpoint), reverse=True):
        mp = info.mountpoint
        if mp == "/" or mp == rootfs or mp.startswith(rootfs + "/") or rootfs.startswith(mp + "/"):
            continue
        try:
            m.umount(mp, m.MNT_DETACH)
        except OSError:
            pass


def _write_sysctls(plan: RootfsPlan) -> None:
    for key, value in plan.sysctl.items():
        try:
            target = open_in_root(plan.rootfs, "/proc/sys/" + key.replace(".", "/"))
        except FileNotFoundError:
            raise Invalid(f"sysctl {key!r} does not exist on this kernel (or the container has no /proc)") from None
        try:
            fd = os.open(fd_path(target), os.O_WRONLY | os.O_CLOEXEC)
        finally:
            os.close(target)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)


def finish(plan: RootfsPlan) -> None:
    """After the pivot: the read-only root."""
    if plan.readonly:
        _remount_readonly("/")


def _mount_flags(path: str) -> int:
    st = os.statvfs(path)
    flags = 0
    for bit, flag in ((os.ST_NOSUID, m.MS_NOSUID), (os.ST_NODEV, m.MS_NODEV), (os.ST_NOEXEC, m.MS_NOEXEC),
                      (os.ST_NOATIME, m.MS_NOATIME), (os.ST_NODIRATIME, m.MS_NODIRATIME),
                      (os.ST_RELATIME, m.MS_RELATIME)):
        if st.f_flag & bit:
            flags |= flag
    return flags


def _remount_readonly(path: str) -> None:
    m.mount(None, path, None, m.MS_REMOUNT | m.MS_BIND | m.MS_RDONLY | _mount_flags(path))


def _readonly(rootfs: str, path: str) -> None:
    try:
        fd = open_in_root(rootfs, path)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        m.mount(fd_path(fd), fd_path(fd), None, m.MS_BIND | m.MS_REC)
    finally:
        os.close(fd)
    _on_target(rootfs, path, _remount_readonly)


def _mask(rootfs: str, path: str) -> None:
    try:
        fd = open_in_root(rootfs, path)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            m.mount("tmpfs", fd_path(fd), "tmpfs", m.MS_RDONLY)
        else:
            null = open_in_root(rootfs, "/dev/null")
            try:
                m.mount(fd_path(null), fd_path(fd), None, m.MS_BIND)
            finally:
                os.close(null)
    finally:
        os.close(fd)
