"""libc calls the standard library lacks, declared through `_ctypes` alone.

The runtime starts once per container, so its imports are on the clock:
`import ctypes` costs ~3 ms (struct, collections, functools); `_ctypes` costs
~0.2 ms and is enough to declare a few C functions that return `long`.
Every wrapper raises OSError with the errno and the call that failed.
"""

from __future__ import annotations

import _ctypes
import os
import sys

_ORDER = sys.byteorder


class c_int(_ctypes._SimpleCData):
    _type_ = "i"


class c_void_p(_ctypes._SimpleCData):
    _type_ = "P"


class c_long(_ctypes._SimpleCData):
    _type_ = "l"


class c_ulong(_ctypes._SimpleCData):
    _type_ = "L"


class c_char(_ctypes._SimpleCData):
    _type_ = "c"


class _IntFunction(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_int


class _LongFunction(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_long


class _PointerFunction(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_void_p


_RESTYPES = {"int": _IntFunction, "long": _LongFunction, "pointer": _PointerFunction}


class Library:
    """A shared object opened with dlopen; `function(name, returns)` declares one of its C functions.

    Arguments are passed as ctypes converts them: int -> C int, bytes -> char *,
    None -> NULL; wrap pointers and 64-bit values in `pointer_arg`.
    """

    def __init__(self, name: str | None) -> None:
        self._handle = _ctypes.dlopen(name, os.RTLD_NOW)

    def function(self, name: str, returns: str = "int") -> _ctypes.CFuncPtr:
        return _RESTYPES[returns]((name, self))


def buffer(size: int, data: bytes = b"") -> _ctypes.Array:
    """A writable C buffer (its address is `address(buf)`, its bytes `buf.raw`)."""

    class _Buffer(_ctypes.Array):
        _type_ = c_char
        _length_ = size

    buf = _Buffer()
    if data:
        buf.raw = data
    return buf


def address(buf: _ctypes.Array) -> int:
    return _ctypes.addressof(buf)


def pointer_arg(value: int) -> c_ulong:
    """Pass a pointer or a 64-bit value to a variadic C function (plain ints become 32-bit)."""
    return c_ulong(value)


def u32(*values: int) -> bytes:
    """Native-endian unsigned 32-bit fields, without `struct` (one less extension module to load)."""
    return b"".join(v.to_bytes(4, _ORDER) for v in values)


def u64(*values: int) -> bytes:
    return b"".join(v.to_bytes(8, _ORDER) for v in values)


def read_u32(data: bytes, count: int) -> list[int]:
    return [int.from_bytes(data[i * 4 : i * 4 + 4], _ORDER) for i in range(count)]


def check(result: int, what: str, path: str | None = None) -> int:
    if result == -1:
        err = _ctypes.get_errno()
        if path is not None:
            raise OSError(err, f"{what}: {os.strerror(err)}", path)
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


libc = Library(None)
_unshare = libc.function("unshare")
_setns = libc.function("setns")
_mount = libc.function("mount")
_umount2 = libc.function("umount2")
_sethostname = libc.function("sethostname")
_setdomainname = libc.function("setdomainname")
_prctl = libc.function("prctl")
_capget = libc.function("capget")
_capset = libc.function("capset")
_syscall = libc.function("syscall", "long")
_close_range = libc.function("close_range")
_prlimit = libc.function("prlimit")

# Syscalls glibc does not wrap, by machine.
_SYSCALLS = {
    "x86_64": {"pivot_root": 155, "keyctl": 250, "mount_setattr": 442, "openat2": 437, "rt_sigaction": 13,
               "rt_sigprocmask": 14},
    "aarch64": {"pivot_root": 41, "keyctl": 219, "mount_setattr": 442, "openat2": 437, "rt_sigaction": 134,
                "rt_sigprocmask": 135},
}
_NR = _SYSCALLS.get(os.uname().machine, _SYSCALLS["x86_64"])


def _bytes(value: str | bytes | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return os.fsencode(value)


def unshare(flags: int) -> None:
    check(_unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    check(_setns(fd, nstype), "setns")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    res = _mount(_bytes(source), _bytes(target), _bytes(fstype), pointer_arg(flags), _bytes(data))
    if res == -1:
        err = _ctypes.get_errno()
        what = f"mount {source or fstype or ''} on {target}" if fstype != "none" else f"mount on {target}"
        raise OSError(err, f"{what}: {os.strerror(err)}")


AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000


def mount_setattr(fd: int, attr_set: int, attr_clr: int = 0, recursive: bool = True) -> None:
    """Change mount attributes (MOUNT_ATTR_*) of the mount at O_PATH `fd`, and below it if `recursive`."""
    attr = u64(attr_set, attr_clr, 0, 0)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    check(_syscall(_NR["mount_setattr"], fd, b"", flags, attr, len(attr)), "mount_setattr")


def openat2(dir_fd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2) with struct open_how {flags, mode, resolve}."""
    how = u64(flags, mode, resolve)
    return check(_syscall(_NR["openat2"], dir_fd, _bytes(path), how, len(how)), f"openat2 {path}", path)


def umount2(target: str, flags: int = 0) -> None:
    check(_umount2(_bytes(target), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    check(_syscall(_NR["pivot_root"], _bytes(new_root), _bytes(put_old)), "pivot_root")


def sethostname(name: str) -> None:
    data = name.encode()
    check(_sethostname(data, len(data)), "sethostname")


def setdomainname(name: str) -> None:
    data = name.encode()
    check(_setdomainname(data, len(data)), "setdomainname")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return check(
        _prctl(option, pointer_arg(arg2), pointer_arg(arg3), pointer_arg(arg4), pointer_arg(arg5)), f"prctl({option})"
    )


def capget(header: bytes, size: int) -> bytes:
    data = buffer(size)
    check(_capget(header, pointer_arg(address(data))), "capget")
    return data.raw


def capset(header: bytes, data: bytes) -> None:
    check(_capset(header, data), "capset")


KEYCTL_JOIN_SESSION_KEYRING = 1


def join_session_keyring(name: str | None) -> None:
    """A fresh session keyring, so the container cannot read the caller's keys."""
    check(_syscall(_NR["keyctl"], KEYCTL_JOIN_SESSION_KEYRING, _bytes(name), 0, 0, 0), "keyctl(join session keyring)")


CLOSE_RANGE_CLOEXEC = 1 << 2


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    check(_close_range(first, pointer_arg(last), flags), "close_range")


RLIM_INFINITY = (1 << 64) - 1


def setrlimit(resource: int, soft: int, hard: int) -> None:
    """prlimit(0, ...) on the caller; -1 means unlimited."""
    limits = u64(RLIM_INFINITY if soft < 0 else soft, RLIM_INFINITY if hard < 0 else hard)
    check(_prlimit(0, resource, limits, None), f"setrlimit({resource})")


SIG_SETMASK = 2
_NSIG = 64
_SIGKILL, _SIGSTOP = 9, 19


def reset_signals() -> None:
    """Every signal back to its default action and none blocked, as a fresh process expects after execve.

    Ignored dispositions and the blocked mask survive execve: Python ignores SIGPIPE and SIGXFSZ, a
    background shell or a shim ignores SIGINT/SIGQUIT/SIGTERM, and a multi-threaded caller may have any
    mask - glibc's own signals 32 and 33 included, which its wrappers (sigaction, pthread_sigmask) refuse
    to touch. So this uses the raw syscalls, with a zeroed kernel `struct sigaction` (SIG_DFL, no flags).
    """
    default = bytes(32)
    for sig in range(1, _NSIG + 1):
        if sig != _SIGKILL and sig != _SIGSTOP:
            check(_syscall(_NR["rt_sigaction"], sig, default, None, 8), f"rt_sigaction({sig})")
    check(_syscall(_NR["rt_sigprocmask"], SIG_SETMASK, bytes(8), None, 8), "rt_sigprocmask")
