"""SIGTERM under load: every call received before shutdown finishes (or, past the grace, gets
a retryable UNAVAILABLE), never CANCELLED; later calls get UNAVAILABLE; connection tests cut
by shutdown still store their result and audit record. A real server process, both databases."""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from conftest import TEST_KEY
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts_client import AccountClient
from support.factories import account_fields, new_caller
from support.process import ServerProcess

ENV = {"MAILACCOUNTS_CREDENTIAL_KEYS": TEST_KEY}


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A mail server that accepts and never answers: connection tests hang until cut."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield listener.getsockname()[1]
    listener.close()


def test_sigterm_under_load_finishes_calls_and_records_cut_tests(
    database_url: str, tmp_path: Path, silent_port: int
) -> None:
    flags = ("--allow-network", "127.0.0.0/8", "--allow-port", str(silent_port))
    env = {**ENV, "MAILACCOUNTS_GRACE_SECONDS": "2"}
    server = ServerProcess(database_url, tmp_path, *flags, env=env)
    caller = new_caller()
    with AccountClient(server.target, caller, timeout=30) as client:
        fast = client.create_account(**account_fields())
        hanging = client.create_account(
            **account_fields(
                hostname="127.0.0.1", port=silent_port, protocol=pb.PROTOCOL_POP3,
                encryption=pb.ENCRYPTION_NONE,
            )
        )  # fmt: skip
        metadata = caller.metadata()
        tests = [
            client.stub.TestConnection.future(
                pb.TestConnectionRequest(id=hanging.id, timeout_seconds=60),
                metadata=metadata,
                timeout=60,
            )  # fmt: skip
            for _ in range(10)
        ]
        reads = [
            client.stub.GetAccount.future(
                pb.GetAccountRequest(id=fast.id), metadata=metadata, timeout=30
            )
            for _ in range(50)
        ]
        time.sleep(1.0)  # the tests are hanging on the silent server
        server.proc.terminate()
        codes: Counter[grpc.StatusCode] = Counter()
        for future in reads + tests:
            try:
                future.result()
                codes[grpc.StatusCode.OK] += 1
            except grpc.RpcError as exc:
                codes[exc.code()] += 1
        # After the drain, a new call is turned away with a retryable status (or, once the
        # listener is closed, cannot connect: also UNAVAILABLE).
        with pytest.raises(grpc.RpcError) as late:
            client.get_account(fast.id, timeout=5)
        assert late.value.code() == grpc.StatusCode.UNAVAILABLE
    assert server.stop() == 0
    assert codes[grpc.StatusCode.CANCELLED] == 0, codes
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, codes
    assert codes[grpc.StatusCode.OK] >= 50, codes  # the reads, and the cut tests' answers
    # Every cut test stored its result and its audit record.
    again = ServerProcess(database_url, tmp_path, *flags, env=ENV)
    try:
        with AccountClient(again.target, caller) as client:
            events = client.list_audit_events(account_id=hanging.id, page_size=100).events
            tested = [e for e in events if e.action == pb.AUDIT_ACTION_TEST_CONNECTION]
            assert len(tested) == 10
            assert client.get_account(hanging.id).HasField("last_connection_test")
    finally:
        assert again.stop() == 0
