"""Bad bundles fail with one line naming the problem, exit non-zero, and leave nothing behind."""

from __future__ import annotations

import json
import subprocess

import pytest
from runtime_helpers import leftover_cgroups

pytestmark = pytest.mark.root


def mounts_under(path) -> list[str]:
    """Mount points under `path`: the session's temp dir, bundles and rootfs (others mount elsewhere meanwhile)."""
    prefix = str(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p.startswith(prefix)]


def assert_fails_cleanly(runtime, bundle_path, cid, cgroup_path, *needles, log=None):
    before = mounts_under(bundle_path.parents[1])
    log_args = ["--log", str(log), "--log-format=json"] if log else []
    result = subprocess.run(
        runtime.cmd(*log_args, "create", "--bundle", str(bundle_path), cid), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert result.stdout == ""
    assert not (runtime.root / cid).exists(), "state directory left behind"
    assert leftover_cgroups(cgroup_path) == []
    assert mounts_under(bundle_path.parents[1]) == before
    return lines[0]


def test_missing_bundle(runtime, tmp_path):
    assert_fails_cleanly(runtime, tmp_path / "nope", "ktmissing", "/ktmissing", "bundle", "does not exist")


def test_bundle_without_config(runtime, tmp_path):
    (tmp_path / "empty").mkdir()
    assert_fails_cleanly(runtime, tmp_path / "empty", "ktempty", "/ktempty", "no config.json")


def test_bad_config_json(runtime, make_bundle):
    bundle = make_bundle()
    (bundle.path / "config.json").write_text('{"ociVersion": "1.0.2", "process": {')
    assert_fails_cleanly(runtime, bundle.path, bundle.id, bundle.cgroup_path, "config.json", "invalid JSON")


def test_unknown_namespace_type(runtime, make_bundle):
    bundle = make_bundle()
    bundle.config["linux"]["namespaces"].append({"type": "bogus"})
    bundle.write()
    assert_fails_cleanly(runtime, bundle.path, bundle.id, bundle.cgroup_path, "unknown namespace type 'bogus'")


def test_missing_rootfs(runtime, make_bundle, tmp_path):
    bundle = make_bundle()
    bundle.config["root"]["path"] = str(tmp_path / "no-rootfs")
    bundle.write()
    assert_fails_cleanly(runtime, bundle.path, bundle.id, bundle.cgroup_path, "rootfs", "does not exist")


def test_missing_program_fails_at_create_and_rolls_back(runtime, make_bundle):
    bundle = make_bundle(["/bin/no-such-program"])
    assert_fails_cleanly(runtime, bundle.path, bundle.id, bundle.cgroup_path, "no such file or directory")


def test_failure_in_the_child_after_mounts_rolls_back(runtime, make_bundle, tmp_path):
    bundle = make_bundle()
    bundle.config["mounts"].append({"destination": "/data", "type": "bind", "source": str(tmp_path / "absent"),
                                    "options": ["bind"]})
    bundle.write()
    assert_fails_cleanly(runtime, bundle.path, bundle.id, bundle.cgroup_path, "bind source", "does not exist")


def test_unsupported_options_fail_by_name(runtime, make_bundle):
    bundle = make_bundle()
    bundle.config["linux"]["namespaces"].append({"type": "user"})
    bundle.write()
    assert_fails_cleanly(runtime, bundle.path, bundle.id, bundle.cgroup_path, "user namespaces", "not supported")
    bundle.config["linux"]["namespaces"].pop()
    bundle.config["linux"]["resources"]["unified"] = {"memory.high": "1000000"}
    bundle.write()
    assert_fails_cleanly(runtime, bundle.path, bundle.id, bundle.cgroup_path, "unified", "cgroup v2")


def test_systemd_cgroup_flag_fails_clearly(runtime, make_bundle):
    bundle = make_bundle()
    result = subprocess.run([str(runtime.cmd()[0]), "--systemd-cgroup", "create", "--bundle", str(bundle.path),
                             bundle.id], capture_output=True, text=True)
    assert result.returncode == 1
    assert "--systemd-cgroup" in result.stderr and "cgroupfs" in result.stderr


def test_error_with_json_log_is_exactly_one_json_object(runtime, make_bundle, tmp_path):
    bundle = make_bundle(["/bin/no-such-program"])
    log = tmp_path / "oci-log"
    line = assert_fails_cleanly(runtime, bundle.path, bundle.id, bundle.cgroup_path, "no such file", log=log)
    entries = log.read_text().splitlines()
    assert len(entries) == 1
    entry = json.loads(entries[0])
    assert set(entry) == {"level", "msg", "time"}
    assert entry["level"] == "error" and entry["msg"] in line
    assert entry["time"].endswith("Z") and "T" in entry["time"]


def test_existing_id_is_refused_without_harm(runtime, make_bundle, tmp_path):
    bundle = make_bundle(["/bin/sleep", "60"])
    runtime("run", "-d", "--bundle", str(bundle.path), bundle.id, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, capture_output=False)
    result = runtime("create", "--bundle", str(bundle.path), bundle.id, check=False)
    assert result.returncode == 1 and "already exists" in result.stderr
    assert runtime.state(bundle.id)["status"] == "running"
