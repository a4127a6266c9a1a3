"""Rolling-update arithmetic as upstream computes it: fenceposts, how far new and old ReplicaSets may move,
proportional scaling mid-rollout, revisions, template equality and hashes, status and conditions."""

from __future__ import annotations

import datetime as dt

import pytest

from kapal.kube.controllers import deploymentutil as du

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def deployment(replicas=5, surge=None, unavailable=None, strategy="RollingUpdate", generation=1, **status):
    spec = {"replicas": replicas, "strategy": {"type": strategy}, "progressDeadlineSeconds": 600,
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}}
    ru = {}
    if surge is not None:
        ru["maxSurge"] = surge
    if unavailable is not None:
        ru["maxUnavailable"] = unavailable
    if strategy == "RollingUpdate":
        spec["strategy"]["rollingUpdate"] = ru
    return {"metadata": {"name": "web", "uid": "d1", "generation": generation}, "spec": spec, "status": status}


def rs(name, replicas, available=None, created="2026-01-01T00:00:00Z", revision=None, **annotations):
    meta = {"name": name, "uid": name, "creationTimestamp": created, "annotations": dict(annotations)}
    if revision is not None:
        meta["annotations"][du.REVISION] = str(revision)
    return {"metadata": meta, "spec": {"replicas": replicas},
            "status": {"replicas": replicas, "availableReplicas": replicas if available is None else available}}


@pytest.mark.parametrize(("replicas", "surge", "unavailable", "want"), [
    (5, None, None, (2, 1)),        # 25% of 5: surge rounds up, unavailable down
    (10, None, None, (3, 2)),
    (4, 0, 0, (0, 1)),              # never both zero
    (3, "50%", "0%", (2, 0)),
    (5, 1, 2, (1, 2)),
])
def test_fenceposts(replicas, surge, unavailable, want):
    assert du.resolve_fenceposts(deployment(replicas, surge, unavailable)) == want


def test_max_unavailable_is_capped_and_zero_for_recreate():
    assert du.max_unavailable(deployment(2, 0, "100%")) == 2
    assert du.max_unavailable(deployment(3, strategy="Recreate")) == 0
    assert du.max_surge(deployment(3, strategy="Recreate")) == 0


def test_new_rs_grows_up_to_the_surge():
    d = deployment(5)  # surge 2
    old, new = rs("old", 5), rs("new", 0)
    assert du.new_rs_new_replicas(d, [old, new], new) == 2
    old, new = rs("old", 4), rs("new", 2)
    assert du.new_rs_new_replicas(d, [old, new], new) == 3
    old, new = rs("old", 5), rs("new", 2)
    assert du.new_rs_new_replicas(d, [old, new], new) == 2, "already at replicas+maxSurge"
    assert du.new_rs_new_replicas(deployment(5, strategy="Recreate"), [old, new], new) == 5


def test_old_scale_down_counts_unavailable_new_pods_against_the_budget():
    d = deployment(5)  # min available 4
    old, new = rs("old", 5), rs("new", 2, available=0)
    assert du.max_old_scale_down(d, [old, new], new) == 7 - 4 - 2 == 1
    new = rs("new", 2, available=2)
    assert du.max_old_scale_down(d, [old, new], new) == 3


def test_cleanup_unhealthy_first_and_ignores_a_lagging_status():
    unhealthy = rs("a", 3, available=1, created="2026-01-01T00:00:00Z")
    lagging = rs("b", 1, available=2, created="2026-01-01T00:00:01Z")  # status counts pods still going away
    plan = du.cleanup_unhealthy([lagging, unhealthy], budget=5)
    assert [(r["metadata"]["name"], size) for r, size in plan] == [("a", 1)]


def test_scale_down_old_oldest_first_within_availability():
    d = deployment(5)
    older, newer_old = rs("a", 2, created="2026-01-01T00:00:00Z"), rs("b", 3, created="2026-01-01T00:00:05Z")
    new = rs("new", 2)
    plan = du.scale_down_old(d, [older, newer_old, new], [older, newer_old])
    # available 7, min available 4: three may go, the oldest first
    assert [(r["metadata"]["name"], size) for r, size in plan] == [("a", 0), ("b", 2)]


def test_proportional_scaling_mid_rollout():
    # upstream example: 10 replicas (surge 3), old 8 + new 5 = 13 at the limit; scaled to 15 (surge 4 → 19)
    d = deployment(15)
    old = rs("old", 8, created="2026-01-01T00:00:00Z", **{du.MAX_REPLICAS: "13"})
    new = rs("new", 5, created="2026-01-01T00:01:00Z", **{du.MAX_REPLICAS: "13"})
    sizes = du.proportional_sizes(d, [old, new])
    assert sum(sizes.values()) == 15 + du.max_surge(d)
    assert sizes["old"] > 8 and sizes["new"] > 5


def test_active_or_latest():
    a, b = rs("a", 0, created="2026-01-01T00:00:00Z"), rs("b", 0, created="2026-01-01T00:00:01Z")
    assert du.active_or_latest(None, [a, b])["metadata"]["name"] == "b"
    assert du.active_or_latest(None, [a, rs("c", 2)])["metadata"]["name"] == "c"
    assert du.active_or_latest(None, [rs("x", 1), rs("y", 1)]) is None


def test_template_equality_ignores_hash_and_nulls():
    t1 = {"metadata": {"labels": {"app": "web", du.HASH_LABEL: "abc"}}, "spec": {"containers": [{"name": "c"}]}}
    t2 = {"metadata": {"creationTimestamp": None, "labels": {"app": "web"}},
          "spec": {"containers": [{"name": "c", "resources": {}}]}}
    assert du.equal_ignore_hash(t1, t2)
    assert not du.equal_ignore_hash(t1, {**t2, "spec": {"containers": [{"name": "d"}]}})
    assert du.pod_template_hash(t1) == du.pod_template_hash(t2)
    assert du.pod_template_hash(t1, 1) != du.pod_template_hash(t1)
    assert set(du.pod_template_hash(t1)) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_find_new_picks_the_oldest_match():
    d = deployment()
    same = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}
    a = {**rs("a", 1, created="2026-01-01T00:00:02Z"), "spec": {"replicas": 1, "template": same}}
    b = {**rs("b", 1, created="2026-01-01T00:00:01Z"), "spec": {"replicas": 1, "template": same}}
    assert du.find_new(d, [a, b])["metadata"]["name"] == "b"


def test_revision_annotations_move_forward_with_history():
    d = deployment()
    d["metadata"]["annotations"] = {"team": "a", du.LAST_APPLIED: "{}"}
    existing = rs("x", 0, revision=1)
    annotations, changed = du.new_rs_annotations(d, existing, 3, exists=True)
    assert changed and annotations[du.REVISION] == "3" and annotations[du.REVISION_HISTORY] == "1"
    assert annotations["team"] == "a" and du.LAST_APPLIED not in annotations
    fresh, _ = du.new_rs_annotations(d, rs("y", 0), 1, exists=False)
    assert fresh[du.DESIRED_REPLICAS] == "5" and fresh[du.MAX_REPLICAS] == "7"


def test_status_conditions_and_completion():
    d = deployment(3)
    new = rs("new", 3, available=3)
    status = du.calculate_status(d, [rs("old", 0), new], new, NOW)
    assert status["replicas"] == 3 and status["updatedReplicas"] == 3 and status["unavailableReplicas"] == 0
    assert du.get_condition(status, "Available")["reason"] == du.MIN_AVAILABLE
    assert du.complete(d, status)
    short = du.calculate_status(d, [rs("new", 3, available=1)], rs("new", 3, available=1), NOW)
    assert du.get_condition(short, "Available")["status"] == "False"
    assert not du.complete(d, short)


def test_progress_deadline():
    d = deployment(3)
    d["spec"]["progressDeadlineSeconds"] = 10
    status = {"conditions": [du.new_condition("Progressing", "True", du.RS_UPDATED, "x",
                                              NOW - dt.timedelta(seconds=11))]}
    assert du.timed_out(d, status, NOW)
    status = {"conditions": [du.new_condition("Progressing", "True", du.RS_UPDATED, "x",
                                              NOW - dt.timedelta(seconds=5))]}
    assert not du.timed_out(d, status, NOW)
    assert du.progressing({**d, "status": {"updatedReplicas": 1}}, {"updatedReplicas": 2})


def test_set_condition_keeps_transition_time():
    status = {}
    du.set_condition(status, du.new_condition("Progressing", "True", du.RS_UPDATED, "a", NOW))
    later = NOW + dt.timedelta(minutes=1)
    du.set_condition(status, du.new_condition("Progressing", "True", du.NEW_RS_AVAILABLE, "b", later))
    cond = du.get_condition(status, "Progressing")
    assert cond["reason"] == du.NEW_RS_AVAILABLE
    assert cond["lastTransitionTime"] == du.ts(NOW) and cond["lastUpdateTime"] == du.ts(later)


def test_a_lagging_status_does_not_widen_the_scale_down():
    d = deployment(5)  # min available 4
    old = rs("old", 2, available=5, created="2026-01-01T00:00:00Z")  # just scaled 5 -> 2, pods still counted
    new = rs("new", 3, available=2, created="2026-01-01T00:00:05Z")
    assert du.settled_available([old, new]) == 4
    assert du.scale_down_old(d, [old, new], [old]) == [], "only 4 are really available: nothing more may go"
