"""The informer cache: keys, the namespace index and custom indexes follow puts and removes."""

from __future__ import annotations

from kapal.kube.client.store import Indexer, controller_uid_index, copy_object, object_key, split_key


def pod(name, ns="default", node=None, owner=None, rv="1"):
    meta = {"name": name, "namespace": ns, "resourceVersion": rv}
    if owner:
        meta["ownerReferences"] = [{"uid": owner, "controller": True, "kind": "ReplicaSet", "name": "rs"}]
    return {"metadata": meta, "spec": {"nodeName": node} if node else {}}


def test_keys():
    assert object_key(pod("a", "ns1")) == "ns1/a"
    assert object_key({"metadata": {"name": "node1"}}) == "node1"
    assert split_key("ns1/a") == ("ns1", "a")
    assert split_key("node1") == (None, "node1")


def test_indexes_follow_updates_and_removes():
    idx = Indexer()
    idx.add_index("node", lambda o: [o["spec"]["nodeName"]] if o["spec"].get("nodeName") else [])
    idx.add_index("owner", controller_uid_index)
    idx.put("default/a", pod("a", node="n1", owner="u1"))
    idx.put("default/b", pod("b", node="n1"))
    idx.put("other/c", pod("c", "other", node="n2", owner="u1"))
    assert sorted(o["metadata"]["name"] for o in idx.by_index("node", "n1")) == ["a", "b"]
    assert sorted(o["metadata"]["name"] for o in idx.list("default")) == ["a", "b"]
    assert sorted(o["metadata"]["name"] for o in idx.by_index("owner", "u1")) == ["a", "c"]
    idx.put("default/a", pod("a", node="n2", owner="u1", rv="2"))
    assert [o["metadata"]["name"] for o in idx.by_index("node", "n1")] == ["b"]
    assert sorted(o["metadata"]["name"] for o in idx.by_index("node", "n2")) == ["a", "c"]
    idx.remove("other/c")
    assert [o["metadata"]["name"] for o in idx.by_index("node", "n2")] == ["a"]
    assert idx.index_values("node") == ["n1", "n2"] or sorted(idx.index_values("node")) == ["n1", "n2"]
    assert idx.list("other") == []
    assert len(idx) == 2


def test_index_added_late_covers_existing_objects():
    idx = Indexer()
    idx.put("default/a", pod("a", node="n1"))
    idx.add_index("node", lambda o: [o["spec"].get("nodeName", "")])
    assert [o["metadata"]["name"] for o in idx.by_index("node", "n1")] == ["a"]


def test_copy_object_is_deep():
    original = pod("a", node="n1")
    copy = copy_object(original)
    copy["spec"]["nodeName"] = "n2"
    assert original["spec"]["nodeName"] == "n1"
