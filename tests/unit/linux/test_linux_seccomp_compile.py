"""OCI seccomp profiles compile to BPF with libseccomp (nothing is loaded here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kapal.errors import Invalid, Unsupported
from kapal.linux import seccomp

PODMAN = Path("/work/shared/docs/samples/podman-config.json")


def test_podmans_default_profile_compiles():
    if not PODMAN.exists():
        pytest.skip("podman sample config not available")
    profile = json.loads(PODMAN.read_text())["linux"]["seccomp"]
    bpf = seccomp.compile_profile(profile)
    assert len(bpf) % 8 == 0 and len(bpf) // 8 > 100


def test_a_rule_changes_the_program():
    base = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"]}
    with_rule = dict(base, syscalls=[{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95}])
    assert seccomp.compile_profile(base) != seccomp.compile_profile(with_rule)
    # unknown syscall names are skipped, as runc does
    unknown = dict(base, syscalls=[{"names": ["no_such_syscall"], "action": "SCMP_ACT_ERRNO"}])
    assert seccomp.compile_profile(unknown) == seccomp.compile_profile(base)


def test_bad_profiles_fail_by_name():
    with pytest.raises(Invalid, match="SCMP_ACT_NOPE"):
        seccomp.compile_profile({"defaultAction": "SCMP_ACT_NOPE"})
    with pytest.raises(Unsupported, match="listenerPath"):
        seccomp.compile_profile({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock"})
    with pytest.raises(Invalid, match="comparison"):
        seccomp.compile_profile({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_X"}]}]})
