"""Helpers for tests that race calls against each other from several connections."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from mailaccounts_client import AccountClient


def run_together(
    clients: list[AccountClient], call: Callable[[AccountClient, int], Any]
) -> list[Any]:
    """Runs `call(client_i, i)` on one thread per client, released at once by a barrier.
    Each result is the call's return value or the grpc.RpcError it raised."""
    barrier = threading.Barrier(len(clients))

    def worker(i: int) -> Any:
        barrier.wait(timeout=10)
        try:
            return call(clients[i], i)
        except grpc.RpcError as err:
            return err

    with ThreadPoolExecutor(len(clients)) as pool:
        return list(pool.map(worker, range(len(clients))))
