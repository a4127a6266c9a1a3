"""The runtime cache tells a pod's worker when a container it refreshes has already ended (PLEG events)."""

from __future__ import annotations

import asyncio

from kapal.kube.kubelet.containers import L_CONTAINER_NAME, L_POD_UID
from kapal.kube.kubelet.pleg import RuntimeCache


class EngineAnswers:
    """What `inspect` of one container answers, changed by the test between calls (pure logic, no engine)."""

    def __init__(self) -> None:
        self.status = "running"

    async def inspect_container(self, cid: str) -> dict:
        return {"Id": cid, "Config": {"Labels": {L_POD_UID: "uid-1", L_CONTAINER_NAME: "c"}},
                "State": {"Status": self.status, "Running": self.status == "running", "ExitCode": 2}}


def test_a_container_found_ended_on_refresh_wakes_its_pod():
    engine = EngineAnswers()
    woken: list[str] = []
    cache = RuntimeCache(engine, "node-1", woken.append)  # type: ignore[arg-type]

    async def scenario() -> None:
        await cache.refresh("c1")
        assert woken == [], "a running container needs nothing from its worker"
        engine.status = "exited"
        await cache.refresh("c1")
        assert woken == ["uid-1"], "the crash is reported even though the relist will see no change"
        await cache.refresh("c1")
        assert woken == ["uid-1"], "the same exit is reported once"
        await cache.refresh("c2")
        assert woken == ["uid-1", "uid-1"], "a container that ended before its first refresh is reported"

    asyncio.run(scenario())
