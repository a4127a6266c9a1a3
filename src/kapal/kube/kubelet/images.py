"""Images for containers: imagePullPolicy, pulls through the engine, pull backoff, upstream's reasons.

IfNotPresent uses what the engine has; Always pulls every time (the API server defaults it for untagged
and `:latest` images); Never only looks. A failed pull is ErrImagePull, and while its backoff runs the
container waits in ImagePullBackOff. Concurrent pulls of one image share one request to the engine.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from kapal import errors

from .backoff import Backoff
from .engineapi import EngineApi

log = logging.getLogger(__name__)

_REFERENCE = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]{1,2}[a-z0-9]+|-+[a-z0-9]+)*)*"
                        r"(:[\w][\w.-]{0,127})?(@sha256:[a-f0-9]{64})?$")


class ImageError(errors.KapalError):
    """The container cannot get its image; `reason` is what the container status shows while it waits."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # type: ignore[misc]


@dataclass(frozen=True)
class PulledImage:
    id: str
    config: dict[str, Any]
    pulled: bool  # False: it was already present
    seconds: float = 0.0
    size: int = 0


def pull_policy(container: dict[str, Any]) -> str:
    policy = container.get("imagePullPolicy")
    if policy:
        return policy
    image = container.get("image") or ""
    if "@" in image:
        return "IfNotPresent"
    tail = image.rsplit("/", 1)[-1]
    return "Always" if ":" not in tail or tail.endswith(":latest") else "IfNotPresent"


class ImageManager:
    def __init__(self, engine: EngineApi, backoff_max: float = 300.0, serialize: bool = False) -> None:
        self.engine = engine
        self.backoff = Backoff(10.0, backoff_max)
        self._pulls: dict[str, asyncio.Future[None]] = {}
        self._serial = asyncio.Lock() if serialize else None
        self._last_failure: dict[tuple[str, str], float] = {}

    async def ensure(self, container: dict[str, Any], pod_uid: str, on_pulling: Any = None) -> PulledImage:
        image = container.get("image") or ""
        if not image or not _REFERENCE.match(image.lower()) or image != image.strip():
            raise ImageError("InvalidImageName", f'Failed to apply default image tag "{image}": couldn\'t parse '
                                                 f'image name "{image}": invalid reference format')
        policy = pull_policy(container)
        if policy not in ("Always", "IfNotPresent", "Never"):
            raise ImageError("InvalidImageName", f"unknown imagePullPolicy {policy!r}")
        present = await self.engine.inspect_image(image) if policy != "Always" else None
        if present is not None:
            return PulledImage(present["Id"], present.get("Config") or {}, False, size=int(present.get("Size") or 0))
        if policy == "Never":
            raise ImageError("ErrImageNeverPull", f'Container image "{image}" is not present with pull policy of '
                                                  "Never")
        key = (pod_uid, image)
        failed_at = self._last_failure.get(key)
        if failed_at is not None and self.backoff.remaining(key, failed_at) > 0:
            raise ImageError("ImagePullBackOff", f'Back-off pulling image "{image}"')
        if on_pulling is not None:
            on_pulling()
        started = time.monotonic()
        try:
            await self._pull(image)
        except errors.KapalError as e:
            self.backoff.next(key)
            self._last_failure[key] = time.time()
            raise ImageError("ErrImagePull", f'failed to pull and unpack image "{image}": {_engine_message(e)}') \
                from e
        self._last_failure.pop(key, None)
        self.backoff.reset(key)
        info = await self.engine.inspect_image(image)
        if info is None:
            raise ImageError("ErrImagePull", f'image "{image}" is not present after pulling it')
        return PulledImage(info["Id"], info.get("Config") or {}, True, time.monotonic() - started,
                           int(info.get("Size") or 0))

    async def _pull(self, image: str) -> None:
        pending = self._pulls.get(image)
        if pending is not None:
            await asyncio.shield(pending)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pulls[image] = fut
        try:
            if self._serial is not None:
                async with self._serial:
                    await self.engine.pull_image(image)
            else:
                await self.engine.pull_image(image)
            fut.set_result(None)
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: waiters re-raise it themselves
            raise
        finally:
            self._pulls.pop(image, None)

    def retry_in(self, pod_uid: str, image: str) -> float:
        """Seconds until a failed pull of `image` for this pod may be tried again (0: now)."""
        failed_at = self._last_failure.get((pod_uid, image))
        if failed_at is None:
            return 0.0
        return self.backoff.remaining((pod_uid, image), failed_at) + 0.05

    def forget(self, pod_uid: str) -> None:
        for key in [k for k in self._last_failure if k[0] == pod_uid]:
            self._last_failure.pop(key, None)
            self.backoff.reset(key)


def _engine_message(e: errors.KapalError) -> str:
    return getattr(e, "engine_message", None) or str(e)
