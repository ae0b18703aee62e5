"""What every fake server shares: an aiohttp app on 127.0.0.1 that starts, stops and is an
async context manager. Port 0 by default, so parallel tests never collide."""

from __future__ import annotations

from typing import Self

from aiohttp import web

HOST = "127.0.0.1"


class LocalServer:
    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    def make_app(self) -> web.Application:
        """The server's routes; each fake adds its own."""
        raise NotImplementedError

    async def start(self, port: int = 0) -> None:
        self._runner = web.AppRunner(self.make_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, port)
        await site.start()
        self._port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._port
