"""The engine's event stream (`GET /events`, `docker events`): what happened to containers, images,
volumes and networks, in Docker's message shape, kept in memory (the last 1,000) for `since`."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

Listener = Callable[[dict], None]


class EventLog:
    def __init__(self, keep: int = 1000) -> None:
        self._events: deque[dict] = deque(maxlen=keep)
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def emit(self, kind: str, action: str, actor: str, attributes: dict[str, str] | None = None) -> dict:
        now = time.time_ns()
        event = {
            "Type": kind,
            "Action": action,
            "Actor": {"ID": actor, "Attributes": dict(attributes or {})},
            "scope": "local",
            "time": now // 1_000_000_000,
            "timeNano": now,
        }
        if kind == "container" or kind == "image":
            # the fields older clients read
            event["status"] = action
            event["id"] = actor
            if kind == "container" and attributes and "image" in attributes:
                event["from"] = attributes["image"]
        with self._lock:
            self._events.append(event)
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                pass
        return event

    def subscribe(self, listener: Listener, since_ns: int | None = None) -> list[dict]:
        """Register for new events; returns the kept events since `since_ns` (none when it is None)."""
        with self._lock:
            self._listeners.append(listener)
            if since_ns is None:
                return []
            return [e for e in self._events if e["timeNano"] >= since_ns]

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)


def matches(event: dict, filters: dict[str, list[str]]) -> bool:
    """Docker's event filters: type, event/action, container, image, volume, network, label."""
    for key, values in filters.items():
        if not values:
            continue
        actor = event["Actor"]
        attrs = actor.get("Attributes") or {}
        if key == "type" and event["Type"] not in values:
            return False
        if key in ("event", "action") and not any(event["Action"].split(":")[0] == v for v in values):
            return False
        if key in ("container", "image", "volume", "network"):
            if event["Type"] != key and not (key == "image" and event["Type"] == "container"):
                return False
            candidates = {actor["ID"], attrs.get("name", ""), attrs.get("image", "") if key == "image" else ""}
            if not any(v in candidates or (len(v) >= 3 and actor["ID"].startswith(v)) for v in values):
                return False
        if key == "label":
            for v in values:
                k, sep, val = v.partition("=")
                if k not in attrs or (sep and attrs[k] != val):
                    return False
    return True
