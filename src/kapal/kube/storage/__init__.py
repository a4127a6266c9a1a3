"""Revisioned, watchable key-value storage behind one interface: SQLite (default) and etcd."""

from kapal.kube.storage.factory import open_backend
from kapal.kube.storage.interface import Backend, Compacted, Event, KeyValue, ListResult, prefix_end

__all__ = ["Backend", "Compacted", "Event", "KeyValue", "ListResult", "open_backend", "prefix_end"]
