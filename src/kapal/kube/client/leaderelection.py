"""Leader election on a coordination.k8s.io Lease, as client-go's leaderelection package does it.

Candidates try every `retry_period` (jittered) to take the Lease: it is free when it names no holder, or when its
record has not changed for `lease_duration` as *we* observed it (local time, so clock skew between machines does
not matter). The leader renews every `retry_period`; if it cannot renew for `renew_deadline` it stops leading.
Upstream defaults for kube-controller-manager and kube-scheduler: 15 s / 10 s / 2 s.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from kapal import errors
from kapal.kube.client.client import ApiClient
from kapal.kube.client.clock import format_micro_time
from kapal.kube.client.kinds import LEASES

log = logging.getLogger(__name__)

JITTER = 1.2


def default_identity() -> str:
    return f"{socket.gethostname()}_{uuid.uuid4()}"


@dataclass
class LeaderElectionFlags:
    """The --leader-elect* flags every control-plane component takes."""

    leader_elect: bool = True
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    resource_namespace: str = "kube-system"
    resource_name: str = ""

    def elector(self, client: ApiClient, default_name: str) -> LeaderElector | None:
        if not self.leader_elect:
            return None
        return LeaderElector(client, LeaderElectionConfig(
            self.resource_name or default_name, self.resource_namespace, lease_duration=self.lease_duration,
            renew_deadline=self.renew_deadline, retry_period=self.retry_period))


@dataclass
class LeaderElectionConfig:
    lease_name: str
    lease_namespace: str = "kube-system"
    identity: str = field(default_factory=default_identity)
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    release_on_cancel: bool = True

    def __post_init__(self) -> None:
        if self.lease_duration <= self.renew_deadline:
            raise errors.Invalid("leaderElection.leaseDuration must be greater than leaderElection.renewDeadline")
        if self.renew_deadline <= JITTER * self.retry_period:
            raise errors.Invalid("leaderElection.renewDeadline must be greater than "
                                 "leaderElection.retryPeriod*JitterFactor(1.2)")


class LeaderElector:
    def __init__(self, client: ApiClient, config: LeaderElectionConfig) -> None:
        self.client = client
        self.config = config
        self._observed: dict[str, Any] | None = None  # the Lease spec we last saw
        self._observed_time = 0.0  # when (monotonic) we saw it change
        self._observed_rv = ""

    @property
    def is_leader(self) -> bool:
        return bool(self._observed) and self._observed.get("holderIdentity") == self.config.identity

    @property
    def leader(self) -> str:
        return (self._observed or {}).get("holderIdentity") or ""

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        """Wait to become leader, then run `lead()` while renewing. Returns when leadership is lost (`lead` is
        cancelled) or `lead` returns; on cancellation the Lease is released so another candidate takes over at once."""
        try:
            await self._acquire()
            log.info("%s: became leader of %s/%s", self.config.identity, self.config.lease_namespace,
                     self.config.lease_name)
            work = asyncio.create_task(lead(), name=f"leading-{self.config.lease_name}")
            renew = asyncio.create_task(self._renew_loop(), name=f"renew-{self.config.lease_name}")
            try:
                done, _ = await asyncio.wait({work, renew}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (work, renew):
                    t.cancel()
                await asyncio.gather(work, renew, return_exceptions=True)
            if renew in done:
                log.warning("%s: leaderelection lost for %s/%s", self.config.identity, self.config.lease_namespace,
                            self.config.lease_name)
            elif work in done and work.exception() is not None:
                raise work.exception()  # type: ignore[misc]
        except asyncio.CancelledError:
            if self.config.release_on_cancel and self.is_leader:
                await asyncio.shield(self._release())
            raise

    async def _acquire(self) -> None:
        while True:
            if await self.try_acquire_or_renew():
                return
            await asyncio.sleep(self.config.retry_period * (1 + random.random() * (JITTER - 1)))

    async def _renew_loop(self) -> None:
        """Renew every retry_period; return (leadership lost) when no renewal succeeded within renew_deadline."""
        cfg = self.config
        while True:
            deadline = time.monotonic() + cfg.renew_deadline
            while True:
                try:
                    ok = await asyncio.wait_for(self.try_acquire_or_renew(), max(0.1, deadline - time.monotonic()))
                except TimeoutError:
                    ok = False
                if ok:
                    break
                if time.monotonic() + cfg.retry_period > deadline:
                    return
                await asyncio.sleep(cfg.retry_period)
            await asyncio.sleep(cfg.retry_period)

    def _record(self, now_text: str, acquire: str, transitions: int) -> dict[str, Any]:
        return {"holderIdentity": self.config.identity, "leaseDurationSeconds": int(round(self.config.lease_duration)),
                "acquireTime": acquire, "renewTime": now_text, "leaseTransitions": transitions}

    def _observe(self, spec: dict[str, Any], rv: str) -> None:
        if spec != self._observed:
            self._observed = dict(spec)
            self._observed_time = time.monotonic()
        self._observed_rv = rv

    async def try_acquire_or_renew(self) -> bool:
        import datetime as dt

        cfg = self.config
        now_text = format_micro_time(dt.datetime.now(dt.UTC))
        try:
            lease = await self.client.get(LEASES, cfg.lease_name, cfg.lease_namespace)
        except errors.NotFound:
            spec = self._record(now_text, now_text, 0)
            try:
                created = await self.client.create(LEASES, {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": cfg.lease_name, "namespace": cfg.lease_namespace}, "spec": spec})
            except errors.KapalError as e:
                log.debug("creating lease %s/%s failed: %s", cfg.lease_namespace, cfg.lease_name, e)
                return False
            self._observe(spec, created["metadata"]["resourceVersion"])
            return True
        except errors.KapalError as e:
            log.debug("reading lease %s/%s failed: %s", cfg.lease_namespace, cfg.lease_name, e)
            return False
        old = lease.get("spec") or {}
        self._observe(old, lease["metadata"]["resourceVersion"])
        holder = old.get("holderIdentity") or ""
        duration = float(old.get("leaseDurationSeconds") or cfg.lease_duration)
        if holder and holder != cfg.identity and self._observed_time + duration > time.monotonic():
            return False
        transitions = int(old.get("leaseTransitions") or 0)
        if holder == cfg.identity:
            spec = self._record(now_text, old.get("acquireTime") or now_text, transitions)
        else:
            spec = self._record(now_text, now_text, transitions + 1)
        lease["spec"] = spec
        try:
            updated = await self.client.replace(LEASES, lease)
        except errors.KapalError as e:
            log.debug("updating lease %s/%s failed: %s", cfg.lease_namespace, cfg.lease_name, e)
            return False
        self._observe(spec, updated["metadata"]["resourceVersion"])
        return True

    async def _release(self) -> None:
        import datetime as dt

        cfg = self.config
        now_text = format_micro_time(dt.datetime.now(dt.UTC))
        try:
            lease = await self.client.get(LEASES, cfg.lease_name, cfg.lease_namespace)
            if (lease.get("spec") or {}).get("holderIdentity") != cfg.identity:
                return
            lease["spec"] = {"leaseDurationSeconds": 1, "acquireTime": now_text, "renewTime": now_text,
                             "leaseTransitions": int(lease["spec"].get("leaseTransitions") or 0)}
            await asyncio.wait_for(self.client.replace(LEASES, lease), 5)
            log.info("%s: released %s/%s", cfg.identity, cfg.lease_namespace, cfg.lease_name)
        except (errors.KapalError, TimeoutError) as e:
            log.warning("releasing lease %s/%s failed: %s", cfg.lease_namespace, cfg.lease_name, e)
        self._observed = None


async def lead_forever(elector: LeaderElector | None, term: Callable[[], Awaitable[None]]) -> None:
    """Run `term()` for every leadership term (without an elector: always) until cancelled. A lost Lease
    cancels the term; the next one starts when the Lease is won again. A term that fails (the API server
    gone for a while) is logged and started afresh after a pause, with the Lease released meanwhile."""
    pause = 1.0
    while True:
        try:
            if elector is None:
                await term()
                return
            await elector.run(term)
            pause = 1.0
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("a leadership term ended with an error; starting again in %.0fs", pause)
            if elector is not None and elector.is_leader:
                await elector._release()
            await asyncio.sleep(pause)
            pause = min(pause * 2, 30.0)
            continue
        await asyncio.sleep(elector.config.retry_period)


async def lead_until_stopped(elector: LeaderElector | None, term: Callable[[], Awaitable[None]],
                             stop: asyncio.Event, name: str) -> None:
    """`lead_forever` until `stop` is set; an error that ends it is raised here."""
    work = asyncio.create_task(lead_forever(elector, term), name=name)
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if work.done() and work.exception() is not None:
            raise work.exception()  # type: ignore[misc]
    finally:
        for t in (work, stopper):
            t.cancel()
        await asyncio.gather(work, stopper, return_exceptions=True)
