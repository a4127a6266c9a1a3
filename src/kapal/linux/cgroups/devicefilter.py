"""cgroup v2 device access: the OCI allow-list compiled to an eBPF program attached to the cgroup.

cgroup v2 has no devices.allow file; the kernel asks a BPF_PROG_TYPE_CGROUP_DEVICE program instead,
with struct bpf_cgroup_dev_ctx { u32 access_type /* access << 16 | type */; u32 major; u32 minor; }.
The program checks the rules from last to first - the last matching rule decides, as in the OCI list -
and denies what no rule matches. An allow rule matches when it grants every access asked for; a deny
rule when it covers any of them.
"""

from __future__ import annotations

import os

from kapal.linux import libc
from kapal.linux.devices import DeviceRule

# bpf(2) commands, program and attach types (linux/bpf.h)
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2

DEV_BLOCK = 1
DEV_CHAR = 2
ACC_MKNOD = 1
ACC_READ = 2
ACC_WRITE = 4

_NR_BPF = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine, 321)


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """struct bpf_insn { u8 code; u8 dst_reg:4, src_reg:4; s16 off; s32 imm; }"""
    return bytes([code, dst | src << 4]) + off.to_bytes(2, "little", signed=True) + imm.to_bytes(
        4, "little", signed=True
    )


def _ldx_w(dst: int, src: int, off: int) -> bytes:
    return _insn(0x61, dst, src, off)  # dst = *(u32 *)(src + off)


def _and(dst: int, imm: int) -> bytes:
    return _insn(0x57, dst, imm=imm)


def _rsh(dst: int, imm: int) -> bytes:
    return _insn(0x77, dst, imm=imm)


def _mov(dst: int, src: int) -> bytes:
    return _insn(0xBF, dst, src)


def _mov_imm(dst: int, imm: int) -> bytes:
    return _insn(0xB7, dst, imm=imm)


def _jne(dst: int, imm: int, off: int) -> bytes:
    return _insn(0x55, dst, off=off, imm=imm)


def _jeq(dst: int, imm: int, off: int) -> bytes:
    return _insn(0x15, dst, off=off, imm=imm)


_EXIT = _insn(0x95)


def _access_bits(access: str) -> int:
    return (ACC_READ if "r" in access else 0) | (ACC_WRITE if "w" in access else 0) | (
        ACC_MKNOD if "m" in access else 0
    )


def program(rules: list[DeviceRule]) -> bytes:
    """The BPF instructions for an OCI device rule list (registers: r2 type, r3 access, r4 major, r5 minor)."""
    out = [
        _ldx_w(2, 1, 0),
        _and(2, 0xFFFF),
        _ldx_w(3, 1, 0),
        _rsh(3, 16),
        _ldx_w(4, 1, 4),
        _ldx_w(5, 1, 8),
    ]
    for rule in reversed(rules):
        checks: list[tuple[str, int]] = []
        if rule.kind != "a":
            checks.append(("type", DEV_BLOCK if rule.kind == "b" else DEV_CHAR))
        if rule.kind != "a" and rule.major >= 0:
            checks.append(("major", rule.major))
        if rule.kind != "a" and rule.minor >= 0:
            checks.append(("minor", rule.minor))
        acc = _access_bits(rule.access)
        block: list[bytes] = []
        # Each check jumps past the rest of the block when it fails; the offsets are filled in below.
        tests: list[tuple[str, int]] = list(checks)
        size = len(tests) + (3 if acc != ACC_READ | ACC_WRITE | ACC_MKNOD else 0) + 2
        for i, (what, value) in enumerate(tests):
            reg = {"type": 2, "major": 4, "minor": 5}[what]
            block.append(_jne(reg, value, size - i - 1))
        if acc != ACC_READ | ACC_WRITE | ACC_MKNOD:
            remaining = size - len(block) - 1
            block.append(_mov(6, 3))
            if rule.allow:
                block.append(_and(6, ~acc & 0x7))
                block.append(_jne(6, 0, remaining - 2))  # asks for more than the rule grants
            else:
                block.append(_and(6, acc))
                block.append(_jeq(6, 0, remaining - 2))  # asks for nothing this rule denies
        block.append(_mov_imm(0, 1 if rule.allow else 0))
        block.append(_EXIT)
        assert len(block) == size
        out.extend(block)
        if size == 2:
            return b"".join(out)  # matches everything: the earlier rules could never decide
    out.append(_mov_imm(0, 0))
    out.append(_EXIT)
    return b"".join(out)


def _bpf(cmd: int, attr: bytes | object, size: int) -> int:
    return libc.check(libc._syscall(_NR_BPF, cmd, attr, size), f"bpf({cmd})")


def load(instructions: bytes) -> int:
    """BPF_PROG_LOAD a device program; returns its fd. A refusal carries the verifier's last words."""
    insns = libc.buffer(len(instructions), instructions)
    license_ = libc.buffer(4, b"GPL\0")

    def attempt(log) -> int:
        attr = (
            libc.u32(BPF_PROG_TYPE_CGROUP_DEVICE, len(instructions) // 8)
            + libc.u64(libc.address(insns), libc.address(license_))
            + (libc.u32(1, len(log)) + libc.u64(libc.address(log)) if log is not None else bytes(16))
            + bytes(24)
            + libc.u32(0, BPF_CGROUP_DEVICE)
        )
        attr += bytes(128 - len(attr))
        return _bpf(BPF_PROG_LOAD, attr, len(attr))

    try:
        return attempt(None)
    except OSError as e:
        log = libc.buffer(1 << 20)
        try:
            attempt(log)
        except OSError:
            pass
        lines = log.raw.split(b"\0", 1)[0].decode(errors="replace").strip().splitlines()
        detail = f" ({'; '.join(lines[-2:])})" if lines else ""
        raise OSError(e.errno, f"loading the cgroup device filter: {os.strerror(e.errno)}{detail}") from e


def attached(cgroup_fd: int) -> list[int]:
    """Ids of the device programs attached to a cgroup."""
    ids = libc.buffer(4 * 64)
    attr = libc.buffer(64, libc.u32(cgroup_fd, BPF_CGROUP_DEVICE, 0, 0) + libc.u64(libc.address(ids))
                       + libc.u32(64))
    _bpf(BPF_PROG_QUERY, attr, 64)
    count = libc.read_u32(attr.raw[24:28], 1)[0]
    return libc.read_u32(ids.raw, count)


def apply(cgroup_dir: str, rules: list[DeviceRule]) -> None:
    """Attach the filter for `rules` to the cgroup, then detach the ones it replaces."""
    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        old = attached(fd)
        prog = load(program(rules))
        try:
            _bpf(BPF_PROG_ATTACH, libc.u32(fd, prog, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI, 0) + bytes(12), 32)
        finally:
            os.close(prog)
        for prog_id in old:
            try:
                old_fd = _bpf(BPF_PROG_GET_FD_BY_ID, libc.u32(prog_id, 0, 0) + bytes(4), 16)
            except OSError:
                continue
            try:
                _bpf(BPF_PROG_DETACH, libc.u32(fd, old_fd, BPF_CGROUP_DEVICE, 0, 0) + bytes(12), 32)
            finally:
                os.close(old_fd)
    finally:
        os.close(fd)
