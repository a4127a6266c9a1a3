"""The health endpoints every control-plane component serves (/healthz, /livez, /readyz): "ok" once the
component is up; `checks` name what must hold, e.g. "leaderElection" when it holds or awaits a Lease."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from kapal import errors


@dataclass
class HealthServer:
    bind_address: str
    port: int
    ssl_context: Any = None
    checks: dict[str, Callable[[], bool]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    bound_port: int = 0

    async def start(self) -> None:
        app = web.Application()
        for path in ("/healthz", "/livez", "/readyz"):
            app.router.add_get(path, self._handle)
            app.router.add_get(path + "/{check}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.bind_address, self.port, ssl_context=self.ssl_context)
        try:
            await site.start()
        except OSError as e:
            await self._runner.cleanup()
            self._runner = None
            raise errors.FailedPrecondition(f"cannot serve /healthz on {self.bind_address}:{self.port}: {e.strerror}; "
                                            "pick another --secure-port (0 turns it off)") from None
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.bound_port = sockets[0].getsockname()[1] if sockets else self.port

    async def _handle(self, request: web.Request) -> web.Response:
        only = request.match_info.get("check")
        failed = [name for name, ok in self.checks.items() if (only is None or only == name) and not ok()]
        if "verbose" in request.query:
            lines = [f"[{'-' if n in failed else '+'}]{n} {'failed' if n in failed else 'ok'}" for n in self.checks]
            lines.append(f"healthz check {'failed' if failed else 'passed'}")
            return web.Response(status=500 if failed else 200, text="\n".join(lines) + "\n")
        if failed:
            return web.Response(status=500, text=f"[-]{failed[0]} failed: reason withheld\nhealthz check failed\n")
        return web.Response(text="ok")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
