"""The container process as config.json describes it: user, rlimits, privileges, seccomp, sysctl, mounts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kapal.linux.mount import mountinfo

pytestmark = pytest.mark.root

PODMAN_CONFIG = Path("/work/shared/docs/samples/podman-config.json")


def run(runtime, bundle, check=True):
    return runtime("run", "--bundle", str(bundle.path), bundle.id, check=check)


def test_user_groups_umask_and_home(runtime, make_bundle):
    bundle = make_bundle(["/bin/sh", "-c", "id -u; id -g; id -G; umask; echo $HOME"])
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 100, "additionalGids": [5, 7], "umask": 0o027}
    bundle.write()
    assert run(runtime, bundle).stdout.split() == ["1000", "100", "100", "5", "7", "0027", "/"]
    bundle.config["process"]["user"] = {"uid": 0, "gid": 0}
    bundle.write()
    assert run(runtime, bundle).stdout.split() == ["0", "0", "0", "0022", "/root"]  # root's home from /etc/passwd


def test_rlimits(runtime, make_bundle):
    bundle = make_bundle(["/bin/sh", "-c", "ulimit -n; ulimit -Hn; ulimit -u"])
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1000},
                                           {"type": "RLIMIT_NPROC", "soft": 300, "hard": 300}]
    bundle.write()
    assert run(runtime, bundle).stdout.split() == ["512", "1000", "300"]


def test_raising_a_hard_limit_past_the_runtimes_fails_with_the_limits_name(runtime, make_bundle):
    bundle = make_bundle()
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 1 << 20, "hard": 1 << 20}]
    bundle.write()
    result = run(runtime, bundle, check=False)
    assert result.returncode == 1 and "RLIMIT_NOFILE" in result.stderr and "not permitted" in result.stderr


def test_no_new_privileges_and_oom_score_adj(runtime, make_bundle):
    bundle = make_bundle(["/bin/sh", "-c", "grep NoNewPrivs /proc/self/status; cat /proc/self/oom_score_adj"])
    bundle.config["process"]["oomScoreAdj"] = 500
    bundle.write()
    assert run(runtime, bundle).stdout.split() == ["NoNewPrivs:", "1", "500"]
    bundle.config["process"]["noNewPrivileges"] = False
    bundle.write()
    assert run(runtime, bundle).stdout.split()[:2] == ["NoNewPrivs:", "0"]


@pytest.mark.parametrize("nnp", [True, False])
def test_seccomp_profile_from_config(runtime, make_bundle, nnp):
    bundle = make_bundle(["/bin/sh", "-c", "grep ^Seccomp: /proc/self/status; mkdir /tmp/x 2>&1; echo done"])
    bundle.config["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})
    bundle.config["process"]["noNewPrivileges"] = nnp
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95}],
    }
    bundle.write()
    out = run(runtime, bundle).stdout
    assert out.splitlines()[0].split() == ["Seccomp:", "2"]
    assert "Operation not supported" in out and out.endswith("done\n")


def test_podmans_default_seccomp_profile_runs_busybox(runtime, make_bundle):
    if not PODMAN_CONFIG.exists():
        pytest.skip("podman sample config not available")
    bundle = make_bundle(["/bin/sh", "-c", "grep ^Seccomp: /proc/self/status; ls / > /dev/null && echo ok"])
    bundle.config["linux"]["seccomp"] = json.loads(PODMAN_CONFIG.read_text())["linux"]["seccomp"]
    bundle.write()
    assert run(runtime, bundle).stdout.split() == ["Seccomp:", "2", "ok"]
    assert list((runtime.root / ".seccomp").iterdir()), "the compiled profile is cached"


def test_sysctl_hostname_and_domainname(runtime, make_bundle):
    bundle = make_bundle(["/bin/sh", "-c", "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni; "
                                           "hostname; cat /proc/sys/kernel/domainname"], hostname="h1")
    bundle.config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"}
    bundle.config["domainname"] = "example.test"
    bundle.write()
    assert run(runtime, bundle).stdout.split() == ["1", "1234", "h1", "example.test"]
    with open("/proc/sys/kernel/shmmni") as f:
        assert f.read().strip() != "1234"  # the host's ipc namespace is untouched


def test_no_pivot_moves_the_root_and_chroots(runtime, make_bundle, tmp_path):
    bundle = make_bundle(["/bin/sh", "-c", "echo $$; ls /; grep -c . /proc/mounts"])
    result = runtime("run", "--no-pivot", "--bundle", str(bundle.path), bundle.id)
    lines = result.stdout.split()
    assert lines[0] == "1" and "bin" in lines and "work" not in lines


def test_bind_mounts_files_dirs_ro_and_missing_targets(runtime, make_bundle, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("from the host\n")
    single = tmp_path / "hosts"
    single.write_text("127.0.0.1 localhost\n")
    bundle = make_bundle(["/bin/sh", "-c", "cat /mnt/deep/data/f /etc/extra-hosts; (touch /mnt/deep/data/g) 2>&1;"
                                           " echo w > /rw/written"])
    bundle.config["mounts"] += [
        {"destination": "/mnt/deep/data", "type": "bind", "source": str(data), "options": ["rbind", "ro", "nosuid"]},
        {"destination": "/etc/extra-hosts", "type": "bind", "source": str(single), "options": ["bind"]},
        {"destination": "/rw", "type": "bind", "source": str(tmp_path), "options": ["bind", "rprivate"]},
    ]
    bundle.config["root"]["readonly"] = False
    rootfs = tmp_path / "rw-rootfs"
    shutil.copytree(bundle.config["root"]["path"], rootfs, symlinks=True)
    bundle.config["root"]["path"] = str(rootfs)
    bundle.write()
    out = run(runtime, bundle).stdout
    assert "from the host" in out and "127.0.0.1 localhost" in out and "Read-only file system" in out
    assert (tmp_path / "written").read_text() == "w\n"
    assert (rootfs / "etc" / "extra-hosts").is_file() and (rootfs / "mnt" / "deep" / "data").is_dir()


def test_tmpfs_with_tmpcopyup_keeps_the_image_content(runtime, make_bundle, tmp_path):
    bundle = make_bundle(["/bin/sh", "-c", "cat /etc/hostname; grep ' /etc ' /proc/mounts | cut -d' ' -f3"])
    bundle.config["mounts"].append({"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
                                    "options": ["tmpcopyup", "mode=755"]})
    bundle.write()
    assert run(runtime, bundle).stdout.split() == ["image", "tmpfs"]


def test_no_mount_leaks_to_the_host(runtime, make_bundle, tmp_path):
    before = {m.mountpoint for m in mountinfo()}
    bundle = make_bundle(["/bin/true"])
    bundle.config["mounts"].append({"destination": "/x", "type": "tmpfs", "source": "tmpfs", "options": ["rshared"]})
    bundle.write()
    run(runtime, bundle)
    assert {m.mountpoint for m in mountinfo()} == before


def test_the_program_is_found_after_the_mounts(runtime, make_bundle, tmp_path):
    """args[0] is looked up inside the container once its mounts exist (as runc): by path and on PATH."""
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "hello").write_text('#!/bin/sh\necho "hello from $0"\n')
    (tools / "hello").chmod(0o755)
    mount = {"destination": "/run", "type": "bind", "source": str(tools), "options": ["rbind", "ro"]}
    by_path = make_bundle(["/run/hello"])
    by_path.config["mounts"].append(mount)
    assert run(runtime, by_path.write()).stdout == "hello from /run/hello\n"
    on_path = make_bundle(["hello"])
    on_path.config["mounts"].append(mount)
    on_path.config["process"]["env"] = ["PATH=/bin:/run"]
    assert run(runtime, on_path.write()).stdout == "hello from /run/hello\n"
