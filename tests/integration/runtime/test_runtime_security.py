"""Regression tests for the runtime escapes runc had, and for the container's confinement.

CVE-2019-5736: a process joining a container must not expose the runtime's binary through /proc/PID/exe.
CVE-2024-21626: no host fd or cwd may leak into the container.
CVE-2021-30465: mount targets are resolved inside the rootfs, symlinks included.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from kapal.linux import capabilities
from kapal.linux import namespaces as ns
from kapal.runtime import init, launcher
from kapal.runtime.process import ProcessPlan
from kapal.runtime.state import StateStore

pytestmark = pytest.mark.root


def run_out(runtime, bundle, **kw) -> subprocess.CompletedProcess:
    return runtime("run", "--bundle", str(bundle.path), bundle.id, check=False, **kw)


@pytest.fixture
def writable_rootfs(tmp_path, rootfs):
    path = tmp_path / "rw-rootfs"
    shutil.copytree(rootfs, path, symlinks=True)
    return path


def test_process_joining_a_container_hides_the_runtime_binary(runtime, make_bundle, tmp_path):
    """CVE-2019-5736: while the joining process (still the runtime's Python) is in the container's
    namespaces, a root process in the container cannot open or even resolve its /proc/PID/exe."""
    bundle = make_bundle(["/bin/sleep", "60"])
    with open(tmp_path / "out", "w") as out:
        runtime("run", "-d", "--bundle", str(bundle.path), bundle.id, stdout=out, stderr=out, capture_output=False)
    store = StateStore(str(runtime.root))
    st = store.load(bundle.id)
    config = store.load_config(bundle.id)
    process = dict(config["process"], args=["/bin/true"])
    sync_r, sync_w = os.pipe()
    gate_r, gate_w = os.pipe()
    ns_fds = [(os.open(ns.proc_path(st["pid"], kind), os.O_RDONLY | os.O_CLOEXEC), ns.NAMESPACES[kind][0])
              for kind in launcher.JOIN_ORDER if kind != "cgroup"]
    plan = init.ChildPlan(container_id=bundle.id, process=ProcessPlan.from_oci(process), sync_fd=sync_w,
                          gate_fd=gate_r, preserve_fds=0, preserved=[],
                          keep_fds={sync_w, gate_r, *(fd for fd, _ in ns_fds)})
    pid, _ = launcher._fork(plan, (ns.CLONE_NEWPID, ns.proc_path(st["pid"], "pid")), None, init.run_exec, ns_fds)
    try:
        os.close(sync_w)
        os.close(gate_r)
        assert os.read(sync_r, 1) == b"R"  # joined, set up, waiting at the gate - still python
        assert os.readlink(f"/proc/{pid}/exe") == os.path.realpath(os.readlink("/proc/self/exe"))
        with open(f"/proc/{pid}/status") as f:
            inner = [line for line in f if line.startswith("NSpid:")][0].split()[-1]
        probe = runtime("exec", bundle.id, "/bin/sh", "-c",
                        f"readlink /proc/{inner}/exe; cat /proc/{inner}/exe > /dev/null; readlink /proc/{inner}/fd/0;"
                        f" cat /proc/{inner}/environ", check=False)
        assert probe.stdout.strip() == ""
        assert probe.stderr.count("Permission denied") == 2, probe.stderr  # busybox readlink fails silently
    finally:
        os.write(gate_w, b"G")
        os.close(gate_w)
        os.waitpid(pid, 0)
        for fd, _ in ns_fds:
            os.close(fd)


def test_no_host_fd_reaches_the_container(runtime, make_bundle, tmp_path):
    """CVE-2024-21626: callers may leave fds open (a shell's fd 10, an O_PATH to /sys/fs/cgroup)."""
    host_dir = os.open("/sys/fs/cgroup", os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(host_dir, True)
    try:
        bundle = make_bundle(["/bin/ls", "/proc/self/fd"])
        out = runtime("run", "--bundle", str(bundle.path), bundle.id, pass_fds=(host_dir,)).stdout
        assert out.split() == ["0", "1", "2", "3"]  # 3: ls's own directory fd
        bundle = make_bundle(["/bin/sh", "-c", "sleep 60"])
        with open(tmp_path / "o", "w") as o:
            runtime("run", "-d", "--bundle", str(bundle.path), bundle.id, stdout=o, stderr=o, capture_output=False)
        out = runtime("exec", bundle.id, "/bin/ls", "/proc/self/fd", pass_fds=(host_dir,)).stdout
        assert out.split() == ["0", "1", "2", "3"]
    finally:
        os.close(host_dir)


def test_a_leaked_fd_is_not_a_way_out_as_cwd(runtime, make_bundle):
    """CVE-2024-21626: cwd /proc/self/fd/N with N a host directory must not put the process on the host."""
    host_dir = os.open("/sys/fs/cgroup", os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(host_dir, True)
    try:
        bundle = make_bundle(["/bin/sh", "-c", "pwd; ls"])
        bundle.config["process"]["cwd"] = f"/proc/self/fd/{host_dir}"
        bundle.write()
        result = run_out(runtime, bundle, pass_fds=(host_dir,))
        assert result.returncode != 0
        assert "cpuacct" not in result.stdout and "cpuset" not in result.stdout
        assert "process.cwd" in result.stderr
    finally:
        os.close(host_dir)


def test_preserve_fds_passes_exactly_those(runtime, make_bundle, tmp_path):
    r, w = os.pipe()
    extra = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(r, True)
    os.set_inheritable(extra, True)
    script = tmp_path / "launch.py"
    # fd 3 = the pipe's read end, fd 4 = a stray fd that must not pass with --preserve-fds 1
    script.write_text(
        "import os, sys\n"
        f"os.dup2({r}, 3); os.dup2({extra}, 4)\n"
        "os.execv(sys.argv[1], sys.argv[1:])\n"
    )
    bundle = make_bundle(["/bin/sh", "-c", "(: <&3) 2>/dev/null && echo fd3-open; (: <&4) 2>/dev/null && echo fd4-open;"
                                           " cat <&3"])
    os.write(w, b"through fd 3\n")
    os.close(w)
    import sys

    result = subprocess.run([sys.executable, str(script), *runtime.cmd("run", "--preserve-fds", "1", "--bundle",
                            str(bundle.path), bundle.id)], capture_output=True, text=True, pass_fds=(r, extra),
                            timeout=60)
    os.close(r)
    os.close(extra)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "fd3-open\nthrough fd 3\n"


def test_symlinks_in_the_rootfs_cannot_send_mounts_to_the_host(runtime, make_bundle, writable_rootfs, tmp_path):
    """CVE-2021-30465: `evil -> /host/dir` and `evil2 -> ../../../host/dir` resolve inside the rootfs."""
    host_dir = tmp_path / "host-dir"
    host_dir.mkdir()
    os.symlink(str(host_dir), writable_rootfs / "evil")
    os.symlink("../../../../../../../../" + str(host_dir).lstrip("/"), writable_rootfs / "tmp" / "evil2")
    bundle = make_bundle(["/bin/sh", "-c", "grep -c ' tmpfs ' /proc/mounts; ls -d /evil/a /tmp/evil2/b"],
                         writable_rootfs=writable_rootfs)
    bundle.config["mounts"] += [
        {"destination": "/evil/a", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/tmp/evil2/b", "type": "tmpfs", "source": "tmpfs"},
    ]
    bundle.write()
    result = run_out(runtime, bundle)
    assert result.returncode == 0, result.stderr
    assert os.listdir(host_dir) == []  # nothing created or mounted on the host
    inside = writable_rootfs / str(host_dir).lstrip("/")
    assert sorted(os.listdir(inside)) == ["a", "b"]  # the targets landed inside the rootfs


def test_masked_paths_are_masked(runtime, make_bundle):
    bundle = make_bundle(["/bin/sh", "-c", "wc -c < /proc/keys; ls /sys/firmware | wc -l; "
                                           "(touch /proc/acpi/x) 2>&1; (echo > /proc/keys) 2>&1 || true"])
    out = runtime("run", "--bundle", str(bundle.path), bundle.id).stdout.splitlines()
    assert out[0].strip() == "0"  # /dev/null bound over it (the host's is not empty)
    assert out[1].strip() == "0"  # an empty read-only tmpfs
    assert "Read-only file system" in out[2]
    with open("/proc/keys") as f:
        assert f.read() != ""


def test_dockers_default_capability_set(runtime, make_bundle):
    bundle = make_bundle(["/bin/sh", "-c", "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status"])
    bundle.config["process"]["capabilities"] = {
        key: list(capabilities.DOCKER_DEFAULT) for key in ("bounding", "effective", "permitted")
    }
    bundle.write()
    out = runtime("run", "--bundle", str(bundle.path), bundle.id).stdout
    values = dict(line.split(":\t") for line in out.splitlines())
    expected = f"{capabilities.mask(list(capabilities.DOCKER_DEFAULT)):016x}"
    assert expected == "00000000a80425fb"
    assert values["CapBnd"] == values["CapEff"] == values["CapPrm"] == expected
    assert values["CapInh"] == values["CapAmb"] == "0000000000000000"


def test_dropped_capabilities_are_enforced(runtime, make_bundle):
    bundle = make_bundle(["/bin/sh", "-c", "hostname other 2>&1; mknod /tmp/n c 1 3 2>&1; chown 1 /dev/null 2>&1;"
                                           " true"])
    bundle.config["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})
    bundle.write()
    out = runtime("run", "--bundle", str(bundle.path), bundle.id).stdout
    assert out.count("Operation not permitted") == 3, out


SIGNAL_STATUS = ["/bin/grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"]
CLEAN_SIGNALS = ["SigBlk:", "0000000000000000", "SigIgn:", "0000000000000000"]

# Starts argv[1:] the way a careless caller would: every signal blocked (glibc's own 32 and 33 too, by the
# raw syscall) and the ones a background shell or a shim ignores ignored.
HOSTILE_CALLER = """
import ctypes, os, signal, sys
for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1):
    signal.signal(sig, signal.SIG_IGN)
libc = ctypes.CDLL(None, use_errno=True)
every = ctypes.c_uint64(0xFFFFFFFFFFFFFFFF)
assert libc.syscall(14, 0, ctypes.byref(every), None, 8) == 0  # rt_sigprocmask(SIG_BLOCK)
os.execv(sys.argv[1], sys.argv[1:])
"""


def test_ignored_signals_of_the_runtime_do_not_leak(runtime, make_bundle):
    """Python ignores SIGPIPE and SIGXFSZ; ignored dispositions survive execve unless reset."""
    bundle = make_bundle(SIGNAL_STATUS)
    out = runtime("run", "--bundle", str(bundle.path), bundle.id).stdout
    assert out.split() == CLEAN_SIGNALS


def test_signal_state_of_the_caller_does_not_leak(runtime, make_bundle):
    """A caller's blocked mask and ignored signals (nohup, a background job, a shim) stop at the runtime:
    the container's process starts with nothing blocked and nothing ignored, run and exec alike."""
    bundle = make_bundle(SIGNAL_STATUS)
    hostile = [sys.executable, "-c", HOSTILE_CALLER]
    run = subprocess.run([*hostile, *runtime.cmd("run", "--bundle", str(bundle.path), bundle.id)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == CLEAN_SIGNALS

    sleeper = make_bundle(["/bin/sleep", "60"])
    runtime("run", "--detach", "--bundle", str(sleeper.path), sleeper.id, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, capture_output=False)
    exec_ = subprocess.run([*hostile, *runtime.cmd("exec", sleeper.id, *SIGNAL_STATUS)],
                           capture_output=True, text=True, timeout=60)
    assert exec_.returncode == 0, exec_.stderr
    assert exec_.stdout.split() == CLEAN_SIGNALS


def test_device_cgroup_denies_what_is_not_allowed(runtime, make_bundle):
    bundle = make_bundle(["/bin/sh", "-c", "head -c1 /dev/sda 2>&1; head -c1 /dev/zero | wc -c"])
    bundle.config["linux"]["devices"] = [{"path": "/dev/sda", "type": "b", "major": 8, "minor": 0,
                                          "fileMode": 0o600}]
    bundle.write()
    out = runtime("run", "--bundle", str(bundle.path), bundle.id).stdout
    assert "Operation not permitted" in out  # node exists, access denied by the allow-list
    assert out.strip().endswith("1")


def test_created_container_cannot_run_before_start(runtime, make_bundle, tmp_path):
    bundle = make_bundle(["/bin/sh", "-c", "echo ran > /out/ran"])
    bundle.config["mounts"].append({"destination": "/out", "type": "bind", "source": str(tmp_path),
                                    "options": ["bind"]})
    bundle.write()
    runtime("create", "--bundle", str(bundle.path), bundle.id, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, capture_output=False)
    time.sleep(0.3)
    assert not (tmp_path / "ran").exists()
