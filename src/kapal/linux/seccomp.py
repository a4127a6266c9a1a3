"""OCI seccomp profiles compiled to BPF with libseccomp (libseccomp.so.2, through `_ctypes`).

`compile_profile` runs in the runtime before any namespace exists, so a bad
profile fails early and the container's init (possibly forked from a
multi-threaded daemon) never has to dlopen anything: it only hands the ready
BPF program to the kernel with `load`.
"""

from __future__ import annotations

import os
import sys

from kapal.errors import Invalid, Unsupported
from kapal.linux import libc

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_ERRNO = 0x00050000
SCMP_ACT_TRACE = 0x7FF00000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000

SCMP_FLTATR_CTL_NNP = 3

COMPARE = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

EPERM = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


def _action(name: str, errno_ret: int | None, default_errno: int = EPERM) -> int:
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return SCMP_ACT_KILL_THREAD
    if name == "SCMP_ACT_KILL_PROCESS":
        return SCMP_ACT_KILL_PROCESS
    if name == "SCMP_ACT_TRAP":
        return SCMP_ACT_TRAP
    if name == "SCMP_ACT_ERRNO":
        return SCMP_ACT_ERRNO | ((default_errno if errno_ret is None else errno_ret) & 0xFFFF)
    if name == "SCMP_ACT_TRACE":
        return SCMP_ACT_TRACE | ((default_errno if errno_ret is None else errno_ret) & 0xFFFF)
    if name == "SCMP_ACT_LOG":
        return SCMP_ACT_LOG
    if name == "SCMP_ACT_ALLOW":
        return SCMP_ACT_ALLOW
    if name == "SCMP_ACT_NOTIFY":
        raise Unsupported("seccomp action SCMP_ACT_NOTIFY (a listener) is not supported by kapal-runtime")
    raise Invalid(f"unknown seccomp action {name!r}")


class _Libseccomp:
    def __init__(self) -> None:
        try:
            lib = libc.Library("libseccomp.so.2")
        except OSError as e:
            raise Unsupported("seccomp needs libseccomp.so.2 (Debian package libseccomp2)") from e
        self.init = lib.function("seccomp_init", "pointer")
        self.release = lib.function("seccomp_release")
        self.arch_add = lib.function("seccomp_arch_add")
        self.arch_resolve_name = lib.function("seccomp_arch_resolve_name")
        self.attr_set = lib.function("seccomp_attr_set")
        self.resolve_name = lib.function("seccomp_syscall_resolve_name")
        self.rule_add_array = lib.function("seccomp_rule_add_array")
        self.export_bpf = lib.function("seccomp_export_bpf")


_lib: _Libseccomp | None = None


def _libseccomp() -> _Libseccomp:
    global _lib
    if _lib is None:
        _lib = _Libseccomp()
    return _lib


def _arch_token(name: str) -> str:
    token = name.lower()
    if token.startswith("scmp_arch_"):
        token = token[len("scmp_arch_") :]
    return token


def compile_profile(profile: dict) -> bytes:
    """An OCI `linux.seccomp` object -> a BPF program (struct sock_filter[]) as bytes."""
    if profile.get("listenerPath"):
        raise Unsupported("seccomp listenerPath (user notification) is not supported by kapal-runtime")
    for flag in profile.get("flags") or ():
        if flag not in ("SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"):
            raise Unsupported(f"seccomp flag {flag!r} is not supported by kapal-runtime")
    lib = _libseccomp()
    default_errno = profile.get("defaultErrnoRet")
    default = _action(profile.get("defaultAction", "SCMP_ACT_ALLOW"), default_errno)
    ctx = lib.init(libc.pointer_arg(default))
    if not ctx:
        raise Invalid(f"seccomp: invalid default action {profile.get('defaultAction')!r}")
    ctx_arg = libc.pointer_arg(ctx)
    try:
        rc = lib.attr_set(ctx_arg, SCMP_FLTATR_CTL_NNP, 0)
        if rc < 0:
            raise Invalid(f"seccomp: cannot configure the filter: {os.strerror(-rc)}")
        for arch in profile.get("architectures") or ():
            token = lib.arch_resolve_name(_arch_token(arch).encode())
            token &= 0xFFFFFFFF
            if token == 0:
                raise Invalid(f"seccomp: unknown architecture {arch!r}")
            rc = lib.arch_add(ctx_arg, token)
            if rc < 0 and rc != -17:  # EEXIST: the native arch is already there
                raise Invalid(f"seccomp: cannot add architecture {arch!r}: {os.strerror(-rc)}")
        for rule in profile.get("syscalls") or ():
            action = _action(rule.get("action", ""), rule.get("errnoRet"))
            if action == default:
                continue
            groups = _arg_groups(rule.get("args") or [])
            for name in rule.get("names") or ([rule["name"]] if rule.get("name") else []):
                nr = lib.resolve_name(name.encode())
                if nr < 0:
                    continue  # unknown on this kernel/arch: runc ignores these too
                for args in groups:
                    rc = lib.rule_add_array(ctx_arg, action & 0xFFFFFFFF, nr, len(args) // 24, args or None)
                    if rc < 0 and rc != -17:  # EEXIST: the same rule twice
                        raise Invalid(f"seccomp: cannot add rule for {name}: {os.strerror(-rc)}")
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            rc = lib.export_bpf(ctx_arg, fd)
            if rc < 0:
                raise Invalid(f"seccomp: cannot export the filter: {os.strerror(-rc)}")
            size = os.lseek(fd, 0, os.SEEK_CUR)
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)
    finally:
        lib.release(ctx_arg)


def _arg_groups(args: list[dict]) -> list[bytes]:
    """One packed `struct scmp_arg_cmp[]` per rule to add.

    libseccomp refuses two conditions on the same argument in one rule, so
    those become separate rules (an OR), as runc does.
    """
    packed = []
    indices = [a["index"] for a in args]
    for a in args:
        op = COMPARE.get(a.get("op", ""))
        if op is None:
            raise Invalid(f"seccomp: unknown comparison {a.get('op')!r}")
        packed.append(libc.u32(a["index"], op) + libc.u64(a.get("value", 0), a.get("valueTwo", 0)))
    if not packed:
        return [b""]
    if len(set(indices)) == len(indices):
        return [b"".join(packed)]
    return packed


def load(bpf: bytes) -> None:
    """Install a compiled filter on the calling thread (needs no_new_privs or CAP_SYS_ADMIN)."""
    count = len(bpf) // 8
    program = libc.buffer(len(bpf), bpf)
    fprog = libc.buffer(16, count.to_bytes(2, sys.byteorder) + bytes(6) + libc.u64(libc.address(program)))
    libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, libc.address(fprog))
