"""Runs the real server in a background thread on a loopback port, for tests."""

from __future__ import annotations

import asyncio
import threading

from mailaccounts_server.app import RunningServer, create_server
from mailaccounts_server.config import Settings


class ServerThread:
    """A started server with its own event loop; `target` is what clients dial."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.model_copy(update={"listen": "127.0.0.1:0"})
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(create_server(self.settings), self._loop)
        try:
            self.running: RunningServer = future.result(timeout=60)
        except BaseException:
            self._shutdown_loop()
            raise
        self.target = f"127.0.0.1:{self.running.port}"

    def stop(self, grace: float | None = 0) -> None:
        future = asyncio.run_coroutine_threadsafe(self.running.stop(grace), self._loop)
        future.result(timeout=60)
        self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()
