"""A scripted TCP server on loopback: stands in for a hostile or echoing mail server in tests."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import BinaryIO

Script = Callable[[BinaryIO], None]


@contextlib.contextmanager
def scripted_server(script: Script) -> Iterator[int]:
    """Serves one connection on 127.0.0.1 with ``script``; yields the port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(10)

    def serve() -> None:
        # The probe may hang up in the middle of a flood: broken pipes are expected.
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            conn.settimeout(10)
            with conn, conn.makefile("rwb") as stream:
                script(stream)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        thread.join(10)
        listener.close()
