"""config.json checks that run before anything is created."""

from __future__ import annotations

import copy
import json

import pytest

from kapal.errors import Invalid, NotFound, Unsupported
from kapal.runtime.process import ProcessPlan
from kapal.runtime.spec import default_spec, load_bundle, namespaces, validate


@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "rootfs").mkdir()
    spec = copy.deepcopy(default_spec())
    (tmp_path / "config.json").write_text(json.dumps(spec))
    return tmp_path, spec


def test_default_spec_is_runcs_shape(bundle):
    path, spec = bundle
    assert spec["process"]["args"] == ["sh"] and spec["process"]["terminal"] is True
    assert spec["root"] == {"path": "rootfs", "readonly": True}
    assert any(e.startswith("PATH=") for e in spec["process"]["env"])
    assert spec["hostname"]
    assert validate(spec, str(path)) == str(path / "rootfs")


def test_load_bundle_errors(tmp_path):
    with pytest.raises(NotFound, match="does not exist"):
        load_bundle(str(tmp_path / "nope"))
    with pytest.raises(NotFound, match="no config.json"):
        load_bundle(str(tmp_path))
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(Invalid, match="JSON object"):
        load_bundle(str(tmp_path))


def test_namespace_checks(bundle):
    path, spec = bundle
    spec["linux"]["namespaces"].append({"type": "bogus"})
    with pytest.raises(Invalid, match="unknown namespace type 'bogus'"):
        validate(spec, str(path))
    spec["linux"]["namespaces"][-1] = {"type": "pid"}
    with pytest.raises(Invalid, match="listed twice"):
        validate(spec, str(path))
    spec["linux"]["namespaces"][-1] = {"type": "cgroup", "path": "/no/such/ns"}
    with pytest.raises(NotFound, match="/no/such/ns"):
        namespaces(spec)


def test_unsupported_features_fail_by_name(bundle):
    path, spec = bundle
    for change, needle in (
        (lambda s: s["linux"]["namespaces"].append({"type": "user"}), "user namespaces"),
        (lambda s: s.__setitem__("hooks", {"prestart": [{"path": "/bin/true"}]}), "hooks"),
        (lambda s: s["process"].__setitem__("apparmorProfile", "x"), "apparmor"),
        (lambda s: s["linux"].__setitem__("intelRdt", {"closID": "x"}), "intelRdt"),
    ):
        changed = copy.deepcopy(spec)
        change(changed)
        with pytest.raises(Unsupported, match=needle):
            validate(changed, str(path))


def test_sysctls_must_be_namespaced(bundle):
    path, spec = bundle
    spec["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmax": "100"}
    validate(spec, str(path))
    spec["linux"]["sysctl"] = {"vm.swappiness": "10"}
    with pytest.raises(Invalid, match="not namespaced"):
        validate(spec, str(path))
    spec["linux"]["sysctl"] = {"net.core.somaxconn": "10"}
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "network"]
    with pytest.raises(Invalid, match="network namespace"):
        validate(spec, str(path))


def test_process_plan(bundle):
    _, spec = bundle
    proc = dict(spec["process"], user={"uid": 1000, "gid": 100, "additionalGids": [5], "umask": 0o027},
                rlimits=[{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 18446744073709551615}])
    plan = ProcessPlan.from_oci(proc)
    assert (plan.uid, plan.gid, plan.groups, plan.umask) == (1000, 100, [5], 0o027)
    assert plan.rlimits == [("RLIMIT_NOFILE", 7, 10, -1)]
    assert plan.env_dict()["TERM"] == "xterm"
    with pytest.raises(Invalid, match="RLIMIT_NOPE"):
        ProcessPlan.from_oci(dict(proc, rlimits=[{"type": "RLIMIT_NOPE"}]))
    with pytest.raises(Invalid, match="cwd"):
        ProcessPlan.from_oci(dict(proc, cwd="relative"))
    with pytest.raises(Invalid, match="args"):
        ProcessPlan.from_oci(dict(proc, args=[]))
