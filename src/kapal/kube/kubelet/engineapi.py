"""The kubelet's client of the engine: the Docker Engine API over a unix socket, async (dockershim's role).

Plain requests go through one aiohttp session; attach and exec start are hijacked HTTP connections
(`101 UPGRADED`) opened by hand, returned as `EngineStream`s whose output is demultiplexed from Docker's
8-byte frames when there is no terminal. Failures arrive as kapal.errors made from the engine's JSON
message (404 NotFound, 409 Conflict, 400 Invalid, 501 Unsupported); an unreachable engine is Temporary.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from kapal import errors

log = logging.getLogger(__name__)

API = "/v1.41"
STDIN, STDOUT, STDERR = 0, 1, 2


class ImageNotFound(errors.NotFound):
    pass


def _error(status: int, raw: bytes, what: str) -> errors.KapalError:
    try:
        message = json.loads(raw).get("message") or raw.decode(errors="replace")
    except (ValueError, AttributeError):
        message = raw.decode(errors="replace").strip()
    message = message or f"HTTP {status}"
    kind: type[errors.KapalError] = {
        400: errors.Invalid, 404: errors.NotFound, 409: errors.Conflict, 501: errors.Unsupported,
        503: errors.Temporary,
    }.get(status, errors.KapalError)
    err = kind(f"{what}: {message}")
    err.engine_message = message  # type: ignore[attr-defined]
    return err


def socket_path(endpoint: str) -> str:
    if endpoint.startswith("unix://"):
        return endpoint[len("unix://"):]
    if endpoint.startswith("/"):
        return endpoint
    raise errors.Invalid(f"--container-runtime-endpoint {endpoint!r}: use unix:///path/to/docker.sock "
                         "(a kapal engine socket)")


class EngineStream:
    """A hijacked attach/exec connection: write stdin, read (stream, bytes) until the process ends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, multiplexed: bool) -> None:
        self.reader, self.writer, self.multiplexed = reader, writer, multiplexed

    async def read(self) -> tuple[int, bytes]:
        """(STDOUT|STDERR, data); (STDOUT, b"") at the end."""
        try:
            if not self.multiplexed:
                data = await self.reader.read(65536)
                return STDOUT, data
            head = await self.reader.readexactly(8)
            stream, size = head[0], struct.unpack(">I", head[4:])[0]
            return (STDERR if stream == 2 else STDOUT), await self.reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            return STDOUT, b""

    async def write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)
            await self.writer.drain()

    def close_stdin(self) -> None:
        if not self.writer.is_closing() and self.writer.can_write_eof():
            try:
                self.writer.write_eof()
            except OSError:
                pass

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


class EngineApi:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.path = socket_path(endpoint)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self.path, limit=64),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _unreachable(self, e: Exception) -> errors.Temporary:
        return errors.Temporary(f"cannot reach the container engine at {self.endpoint} ({e or type(e).__name__}); "
                                "is `kapal engine` running there?")

    async def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None,
                      what: str = "", timeout: float | None = 120.0, raw_body: bytes | None = None) -> Any:
        url = "http://engine" + API + path
        if params:
            url += "?" + urlencode({k: _param(v) for k, v in params.items() if v is not None})
        headers = {"Content-Type": "application/json"} if body is not None else None
        data = json.dumps(body).encode() if body is not None else raw_body
        try:
            async with self.session.request(method, url, data=data, headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise _error(resp.status, raw, what or f"{method} {path}")
        except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionRefusedError) as e:
            raise self._unreachable(e) from e
        except TimeoutError as e:
            raise errors.Temporary(f"{what or method + ' ' + path}: the engine did not answer in time") from e
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    # ---- system ---------------------------------------------------------------------------------------------

    async def version(self) -> dict[str, Any]:
        return await self.request("GET", "/version", what="engine version", timeout=10)

    async def info(self) -> dict[str, Any]:
        return await self.request("GET", "/info", what="engine info", timeout=10)

    # ---- containers -----------------------------------------------------------------------------------------

    async def create_container(self, body: dict[str, Any], name: str) -> str:
        out = await self.request("POST", "/containers/create", params={"name": name}, body=body,
                                 what=f"create container {name}")
        return out["Id"]

    async def start_container(self, cid: str) -> None:
        await self.request("POST", f"/containers/{cid}/start", what=f"start container {cid[:12]}")

    async def stop_container(self, cid: str, timeout: int) -> None:
        await self.request("POST", f"/containers/{cid}/stop", params={"t": max(0, int(timeout))},
                           what=f"stop container {cid[:12]}", timeout=max(0, timeout) + 60)

    async def kill_container(self, cid: str, signal: str = "KILL") -> None:
        await self.request("POST", f"/containers/{cid}/kill", params={"signal": signal},
                           what=f"kill container {cid[:12]}")

    async def remove_container(self, cid: str, force: bool = True) -> None:
        await self.request("DELETE", f"/containers/{cid}", params={"force": force, "v": False},
                           what=f"remove container {cid[:12]}")

    async def inspect_container(self, cid: str) -> dict[str, Any]:
        return await self.request("GET", f"/containers/{cid}/json", what=f"inspect container {cid[:12]}")

    async def list_containers(self, labels: list[str], all_: bool = True) -> list[dict[str, Any]]:
        filters = json.dumps({"label": labels}) if labels else None
        return await self.request("GET", "/containers/json", params={"all": all_, "filters": filters},
                                  what="list containers") or []

    async def resize_container(self, cid: str, height: int, width: int) -> None:
        await self.request("POST", f"/containers/{cid}/resize", params={"h": height, "w": width},
                           what="resize terminal")

    # ---- images ---------------------------------------------------------------------------------------------

    async def inspect_image(self, ref: str) -> dict[str, Any] | None:
        try:
            return await self.request("GET", f"/images/{quote(ref, safe='/:@')}/json", what=f"inspect image {ref}")
        except errors.NotFound:
            return None

    async def list_images(self) -> list[dict[str, Any]]:
        return await self.request("GET", "/images/json", what="list images") or []

    async def pull_image(self, ref: str, auth: str | None = None) -> None:
        """Pull and wait for the end of the progress stream; an `error` message in it raises."""
        name, tag = split_reference(ref)
        url = "http://engine" + API + "/images/create?" + urlencode({"fromImage": name, "tag": tag})
        headers = {"X-Registry-Auth": auth} if auth else None
        try:
            async with self.session.post(url, headers=headers, timeout=aiohttp.ClientTimeout(total=None)) as resp:
                if resp.status >= 400:
                    raw = await resp.read()
                    err = _error(resp.status, raw, f"pull {ref}")
                    raise ImageNotFound(str(err)) if resp.status == 404 else err
                async for line in resp.content:
                    if not line.strip():
                        continue
                    try:
                        msg = json.loads(line)
                    except ValueError:
                        continue
                    if msg.get("error") or msg.get("errorDetail"):
                        text = (msg.get("errorDetail") or {}).get("message") or msg.get("error")
                        raise errors.KapalError(text)
        except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionRefusedError) as e:
            raise self._unreachable(e) from e

    # ---- logs -----------------------------------------------------------------------------------------------

    async def logs(self, cid: str, *, follow: bool = False, timestamps: bool = False, since: float | None = None,
                   tail: int | None = None, tty: bool = False) -> AsyncIterator[tuple[int, bytes]]:
        """(stream, chunk) from the container's log; chunks of one stream arrive whole per frame."""
        params = {"stdout": True, "stderr": True, "follow": follow, "timestamps": timestamps,
                  "since": f"{since:.9f}" if since else None, "tail": tail if tail is not None else "all"}
        url = "http://engine" + API + f"/containers/{cid}/logs?" + urlencode(
            {k: _param(v) for k, v in params.items() if v is not None})
        try:
            async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as resp:
                if resp.status >= 400:
                    raise _error(resp.status, await resp.read(), f"logs of container {cid[:12]}")
                multiplexed = not tty
                if not multiplexed:
                    async for chunk in resp.content.iter_any():
                        yield STDOUT, chunk
                    return
                while True:
                    try:
                        head = await resp.content.readexactly(8)
                    except asyncio.IncompleteReadError:
                        return
                    size = struct.unpack(">I", head[4:])[0]
                    yield (STDERR if head[0] == 2 else STDOUT), await resp.content.readexactly(size)
        except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionRefusedError) as e:
            raise self._unreachable(e) from e

    # ---- exec and attach ------------------------------------------------------------------------------------

    async def exec_create(self, cid: str, cmd: list[str], *, tty: bool, stdin: bool, stdout: bool = True,
                          stderr: bool = True) -> str:
        body = {"Cmd": cmd, "Tty": tty, "AttachStdin": stdin, "AttachStdout": stdout, "AttachStderr": stderr,
                "Container": cid}
        out = await self.request("POST", f"/containers/{cid}/exec", body=body, what="exec")
        return out["Id"]

    async def exec_start(self, exec_id: str, tty: bool) -> EngineStream:
        return await self._hijack(f"/exec/{exec_id}/start", json.dumps({"Detach": False, "Tty": tty}).encode(),
                                  multiplexed=not tty)

    async def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        return await self.request("GET", f"/exec/{exec_id}/json", what="inspect exec")

    async def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        await self.request("POST", f"/exec/{exec_id}/resize", params={"h": height, "w": width},
                           what="resize terminal")

    async def attach(self, cid: str, *, stdin: bool, stdout: bool, stderr: bool, tty: bool,
                     logs: bool = False) -> EngineStream:
        query = urlencode({"stream": 1, "stdin": int(stdin), "stdout": int(stdout), "stderr": int(stderr),
                           "logs": int(logs)})
        return await self._hijack(f"/containers/{cid}/attach?{query}", b"", multiplexed=not tty)

    async def _hijack(self, path: str, body: bytes, multiplexed: bool) -> EngineStream:
        try:
            reader, writer = await asyncio.open_unix_connection(self.path, limit=1 << 20)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise self._unreachable(e) from e
        head = (f"POST {API}{path} HTTP/1.1\r\nHost: engine\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        writer.write(head + body)
        await writer.drain()
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
        except (asyncio.IncompleteReadError, TimeoutError) as e:
            writer.close()
            raise errors.KapalError(f"{path}: the engine closed the connection without an answer") from e
        status_line, *header_lines = raw.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        if status not in (101, 200):
            h = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines if line)}
            size = int(h.get("content-length") or 0)
            data = await reader.readexactly(size) if size else await reader.read(65536)
            writer.close()
            raise _error(status, data, path.split("?")[0])
        return EngineStream(reader, writer, multiplexed)

    # ---- events ---------------------------------------------------------------------------------------------

    async def events(self, filters: dict[str, list[str]]) -> AsyncIterator[dict[str, Any]]:
        url = "http://engine" + API + "/events?" + urlencode({"filters": json.dumps(filters)})
        try:
            async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as resp:
                if resp.status >= 400:
                    raise _error(resp.status, await resp.read(), "events")
                async for line in resp.content:
                    if line.strip():
                        yield json.loads(line)
        except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionRefusedError) as e:
            raise self._unreachable(e) from e


def _param(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)


def split_reference(ref: str) -> tuple[str, str]:
    """'repo:tag' / 'repo@digest' / 'repo' -> (name, tag-or-digest) as /images/create wants them."""
    if "@" in ref:
        name, _, digest = ref.partition("@")
        return name, digest
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, "latest"
