"""`docker run` options as a container sees them: limits in its cgroups, /proc through lxcfs (free -m,
CPUs), capabilities, seccomp, devices, read-only root, tmpfs, user, workdir, env, hostname, entrypoint,
init, labels, ulimits, no-new-privileges."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.root
ROOT = Path(__file__).resolve().parents[3]


def test_memory_and_cpus_as_proc_shows_them(docker, hostimage, engine_session):
    if engine_session["lxcfs"] is None:
        pytest.skip("lxcfs is not installed")
    out = docker.out("run", "--rm", "-m", "256m", hostimage, "free", "-m").splitlines()
    mem = next(line.split() for line in out if line.startswith("Mem:"))
    assert mem[1] == "256", out
    assert docker.out("run", "--rm", "--cpus", "1", hostimage, "grep", "-c", "processor", "/proc/cpuinfo") == "1"
    memory = "/sys/fs/cgroup/memory/memory"
    limit = docker.out("run", "--rm", "-m", "64m", "--memory-swap", "96m", hostimage, "cat",
                       f"{memory}.limit_in_bytes", f"{memory}.memsw.limit_in_bytes")
    assert limit.split() == [str(64 << 20), str(96 << 20)]


def test_cpu_pids_and_block_io_limits(docker, busybox):
    script = ("cat /sys/fs/cgroup/cpuset/cpuset.cpus /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/pids/pids.max "
              "/sys/fs/cgroup/blkio/blkio.throttle.read_bps_device /sys/fs/cgroup/cpu/cpu.cfs_quota_us")
    disk = next((d for d in ("/dev/vda", "/dev/sda", "/dev/nvme0n1") if __import__("os").path.exists(d)), None)
    args = ["run", "--rm", "--cpuset-cpus", "0", "--cpu-shares", "512", "--pids-limit", "20", "--cpus", "0.5"]
    if disk:
        args += ["--device-read-bps", f"{disk}:1mb"]
    out = docker.out(*args, busybox, "sh", "-c", script).split()
    assert out[:3] == ["0", "512", "20"] and out[-1] == "50000"
    if disk:
        assert out[4] == str(1 << 20)
    r = docker("run", "--rm", "--blkio-weight", "300", busybox, "true")
    assert r.returncode == 0  # a kernel without io weights: Docker's warning, not an error


def test_out_of_memory_is_recorded(docker, busybox, unique):
    name = f"{unique}-oom"
    r = docker("run", "--name", name, "-m", "16m", "--memory-swap", "16m", busybox, "sh", "-c", "tail /dev/zero",
               check=False)
    try:
        assert r.returncode == 137
        assert docker.out("inspect", "-f", "{{.State.OOMKilled}} {{.State.ExitCode}}", name) == "true 137"
    finally:
        docker("rm", name)


def test_security_defaults_and_options(docker, busybox, tmp_path):
    caps = dict(line.split(":\t") for line in docker.out("run", "--rm", busybox, "grep", "Cap", "/proc/self/status")
                .splitlines())
    assert int(caps["CapEff"], 16) == 0xA80425FB  # Docker's 14 default capabilities
    assert docker.out("run", "--rm", "--cap-drop", "ALL", busybox, "grep", "CapEff", "/proc/self/status").endswith(
        "0000000000000000")
    added = docker.out("run", "--rm", "--cap-add", "NET_ADMIN", busybox, "grep", "CapEff", "/proc/self/status")
    assert int(added.split()[1], 16) & (1 << 12)
    blocked = docker("run", "--rm", busybox, "unshare", "-n", "true", check=False)
    assert blocked.returncode != 0 and "Operation not permitted" in blocked.stderr  # seccomp and no CAP_SYS_ADMIN
    assert docker("run", "--rm", "--privileged", busybox, "unshare", "-n", "true").returncode == 0
    assert docker.out("run", "--rm", "--security-opt", "no-new-privileges", busybox, "grep", "NoNewPrivs",
                      "/proc/self/status").split() == ["NoNewPrivs:", "1"]
    ro = docker("run", "--rm", "--read-only", "--tmpfs", "/run:size=1m", busybox, "sh", "-c",
                "touch /x 2>&1; touch /run/ok && grep ' /run ' /proc/mounts")
    assert "Read-only file system" in ro.stdout and "tmpfs /run tmpfs rw,nosuid,nodev,noexec" in ro.stdout
    assert "size=1024k" in ro.stdout
    devices = docker.out("run", "--rm", busybox, "ls", "/dev").split()
    assert {"null", "zero", "urandom", "tty", "pts", "shm"} <= set(devices) and "vda" not in devices
    assert docker.out("run", "--rm", "--device", "/dev/fuse", busybox, "stat", "-c", "%t:%T", "/dev/fuse") == "a:e5"
    masked = docker("run", "--rm", busybox, "sh", "-c",
                    "wc -c < /proc/timer_list; echo 1 > /proc/sys/kernel/ns_last_pid", check=False)
    assert masked.stdout.split() == ["0"] and "Read-only file system" in masked.stderr


HOST_USR = ["-v", "/usr:/usr:ro", "-v", "/usr/lib:/lib:ro", "-v", "/usr/lib64:/lib64:ro"]  # the host's python
SECCOMP_PROBE = """
import ctypes, errno, os, socket, ssl
libc = ctypes.CDLL(None, use_errno=True)
def errname(number, *args):
    return "ok" if libc.syscall(number, *args) >= 0 else errno.errorcode[ctypes.get_errno()]
ssl.create_default_context()
print("urandom", len(os.urandom(16)), len(os.getrandom(16)))
print("clone3", errname(435, 0, 0), "io_uring_setup", errname(425, 1, 0))
try:
    socket.socket(38, socket.SOCK_SEQPACKET)
except OSError as e:
    print("AF_ALG", errno.errorcode[e.errno])
print("Seccomp", open("/proc/self/status").read().split("Seccomp:")[1].split()[0])
"""


def test_default_seccomp_profile_runs_openssl(docker, busybox):
    """Docker's default profile allows getrandom (OpenSSL 3 seeds with it), answers clone3 with ENOSYS (glibc
    falls back to clone, whose flags the filter checks), refuses io_uring and AF_ALG sockets."""
    python = os.path.realpath("/usr/bin/python3")
    out = docker.out("run", "--rm", *HOST_USR, busybox, "sh", "-c", f"exec {python} -c '{SECCOMP_PROBE}'")
    assert out.splitlines() == ["urandom 16 16", "clone3 ENOSYS io_uring_setup EPERM", "AF_ALG EPERM", "Seccomp 2"]
    unconfined = docker.out("run", "--rm", "--security-opt", "seccomp=unconfined", *HOST_USR, busybox, "sh", "-c",
                            f"exec {python} -c '{SECCOMP_PROBE}'")
    assert unconfined.splitlines()[-1] == "Seccomp 0"


def test_the_command_is_found_inside_the_container_after_its_mounts(docker, rootfs_tar, tmp_path, unique):
    """As runc: argv[0] is looked up in the container, so a bind-mounted program (by path, on PATH, through a
    symlink of the image) runs, and so does a virtualenv's python mounted with its interpreter."""
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "hello").write_text('#!/bin/sh\necho "hello from $0"\n')
    (tools / "hello").chmod(0o755)
    tar = tmp_path / "with-link.tar"
    shutil.copy(rootfs_tar, tar)
    with tarfile.open(tar, "a") as t:
        link = tarfile.TarInfo("bin/hello-link")
        link.type, link.linkname = tarfile.SYMTYPE, "/opt/tools/hello"
        t.addfile(link)
    image = f"{unique}-link:1"
    docker("import", "-c", 'CMD ["sh"]', str(tar), image)
    try:
        mount = ["-v", f"{tools}:/opt/tools:ro"]
        assert docker.out("run", "--rm", *mount, image, "/opt/tools/hello") == "hello from /opt/tools/hello"
        assert docker.out("run", "--rm", *mount, "-e", "PATH=/opt/tools:/bin", image, "hello") == (
            "hello from /opt/tools/hello")
        assert docker.out("run", "--rm", *mount, image, "hello-link") == "hello from /bin/hello-link"
        venv, base = str(ROOT / ".venv"), os.path.realpath(sys.base_prefix)
        python = docker.out("run", "--rm", *HOST_USR, "-v", f"{venv}:{venv}:ro", "-v", f"{base}:{base}:ro", image,
                            f"{venv}/bin/python", "-c", "import sys; print(sys.prefix)")
        assert python == venv
    finally:
        docker("rmi", image)


def test_a_missing_command_fails_the_start_as_docker(docker, busybox, unique):
    """The runtime's lookup fails the start; the CLI prints Docker's words and exits 127 (126 for a file that
    cannot be run); --rm removes the container and its wait reports no second error."""
    name = f"{unique}-missing"
    r = docker("run", "--rm", "--name", name, busybox, "/nonexistent", check=False, timeout=60)
    assert r.returncode == 127, r.stderr
    assert 'exec: "/nonexistent": stat /nonexistent: no such file or directory' in r.stderr
    assert "Error waiting" not in r.stderr
    assert name not in docker.out("ps", "-a", "--format", "{{.Names}}").split()
    r = docker("run", "--name", name, busybox, "nonexist", check=False, timeout=60)
    try:
        assert r.returncode == 127 and 'exec: "nonexist": executable file not found in $PATH' in r.stderr
        status, code, error = docker.out("inspect", "-f", "{{.State.Status}}|{{.State.ExitCode}}|{{.State.Error}}",
                                         name).split("|")
        assert (status, code) == ("created", "127") and 'exec: "nonexist": executable file not found' in error
    finally:
        docker("rm", name)
    r = docker("run", "--rm", busybox, "/etc/passwd", check=False, timeout=60)
    assert r.returncode == 126 and 'exec: "/etc/passwd": permission denied' in r.stderr


def test_process_options(docker, busybox, tmp_path, unique):
    env_file = tmp_path / "env"
    env_file.write_text("# a comment\nFROM_FILE=yes\n")
    out = docker.out(
        "run", "--rm", "--name", f"{unique}-opts", "-u", "1000:1000", "-w", "/work", "-e", "A=1", "--env-file",
        str(env_file), "-h", "kapal-host", "--label", "team=x", "--ulimit", "nofile=512:1024",
        busybox, "sh", "-c", 'echo "$(id -u):$(id -g) $(pwd) $A $FROM_FILE $(hostname) $(ulimit -n) $(ulimit -Hn)"',
    )
    assert out == "1000:1000 /work 1 yes kapal-host 512 1024"
    assert docker.out("run", "--rm", "--entrypoint", "echo", busybox, "from", "entrypoint") == "from entrypoint"
    procs = docker.out("run", "--rm", "--init", busybox, "ps", "-o", "pid,comm").split()
    assert procs[2:4] == ["1", "docker-init"]
    name = f"{unique}-lbl"
    docker("create", "--name", name, "--label", "kapal.test=yes", "--stop-signal", "USR1", busybox)
    try:
        doc = json.loads(docker.out("inspect", name))[0]
        assert doc["Config"]["Labels"]["kapal.test"] == "yes" and doc["Config"]["StopSignal"] == "USR1"
        assert doc["State"]["Status"] == "created" and doc["HostConfig"]["LogConfig"]["Type"] == "json-file"
        assert doc["Mounts"] == [] and doc["State"]["Pid"] == 0
    finally:
        docker("rm", name)


def test_joining_namespaces_by_container_and_by_path(docker, busybox, unique, tmp_path):
    """What the kubelet's pod sandboxes use: NetworkMode ns:<pinned netns file>, and container:<id> for
    ipc/pid (and network), as `docker run --network container:X` does."""
    docker_sdk = pytest.importorskip("docker")
    from kapal.network import netns

    ns_file = tmp_path / "podnet"
    netns.create(ns_file)
    first = f"{unique}-first"
    try:
        docker("run", "-d", "--name", first, busybox, "sleep", "600")
        client = docker_sdk.APIClient(base_url=docker.env["DOCKER_HOST"])
        host = client.create_host_config(network_mode=f"ns:{ns_file}", ipc_mode=f"container:{first}",
                                         pid_mode=f"container:{first}")
        cid = client.create_container(busybox, ["sh", "-c", "readlink /proc/self/ns/net; readlink /proc/self/ns/ipc; "
                                                "ps -o comm | grep -c sleep; ls /sys/class/net"],
                                      host_config=host)["Id"]
        client.start(cid)
        assert client.wait(cid)["StatusCode"] == 0
        net, ipc, sleeps, *links = client.logs(cid).decode().split()
        client.remove_container(cid)
        client.close()
        assert net == f"net:[{os.stat(ns_file).st_ino}]"
        first_ipc = docker.out("exec", first, "readlink", "/proc/self/ns/ipc")
        assert ipc == first_ipc and sleeps == "1" and links == ["lo"]
        shared = docker.out("run", "--rm", "--network", f"container:{first}", busybox, "readlink",
                            "/proc/self/ns/net")
        assert shared == docker.out("exec", first, "readlink", "/proc/self/ns/net")
    finally:
        docker("rm", "-f", first, check=False)
        netns.remove(ns_file)
