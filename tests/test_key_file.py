"""The credential key file: beside the database, checked against what the database stored."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TEST_KEY
from mailaccounts.v1 import account_service_pb2 as pb
from mailaccounts_client import AccountClient, Credentials
from mailaccounts_server.credentials import (
    TOKEN_KEY_ID_PREFIX,
    ConfigurationError,
    CredentialCipher,
    generate_key,
    parse_keys,
    token_key_id,
)
from support.factories import account_fields, clean_env, new_caller
from support.grpc_server import ServerThread
from support.pki import Pki
from support.process import ServerProcess, free_port

LOOPBACK = ("--allow-network", "127.0.0.0/8", "--allow-port", "1024-65535")
KEY_NAME = "mailaccounts.key"


def _key_id(spec: str) -> str:
    return CredentialCipher(parse_keys(spec)).primary_key_id


def _dirs(tmp_path: Path, *names: str) -> list[Path]:
    made = [tmp_path / name for name in names]
    for directory in made:
        directory.mkdir()
    return made


def _store_a_password(
    database_url: str, workdir: Path, *extra: str, env: dict[str, str], port: int
) -> tuple[pb.Account, Credentials]:
    """Starts a server, creates an account with a password (for 127.0.0.1:`port`), stops."""
    caller = new_caller()
    server = ServerProcess(database_url, workdir, *LOOPBACK, *extra, env=env)
    try:
        with AccountClient(server.target, caller) as client:
            account = client.create_account(
                **account_fields(hostname="127.0.0.1", port=port, encryption=pb.ENCRYPTION_NONE)
            )
    finally:
        assert server.stop() == 0
    return account, caller


def _serve(
    database_url: str, workdir: Path, *extra: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """A server start expected to fail before listening."""
    return subprocess.run(
        [sys.executable, "-m", "mailaccounts_server", "serve", "--listen", "127.0.0.1:0",
         "--database-url", database_url, *extra],
        cwd=workdir, env={**clean_env(), **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_token_key_id_reads_the_key_id_from_a_token_prefix() -> None:
    spec = generate_key()
    token = CredentialCipher(parse_keys(spec)).encrypt("secret", aad="row")
    assert token_key_id(token) == token_key_id(token[:TOKEN_KEY_ID_PREFIX]) == _key_id(spec)


def test_keys_that_open_no_stored_credential_refuse_on_either_database(
    make_server: Callable[..., ServerThread],
) -> None:
    with AccountClient(make_server().target, new_caller()) as client:
        client.create_account(**account_fields())
    other = generate_key()
    with pytest.raises(ConfigurationError) as info:
        make_server(credential_keys=other)
    assert _key_id(TEST_KEY) in str(info.value) and _key_id(other) in str(info.value)
    # A rotation under way (new primary, the sealing key still configured) starts.
    make_server(credential_keys=f"{other},{TEST_KEY}")


def test_the_default_key_file_is_beside_the_database_whatever_the_working_directory(
    tmp_path: Path, closed_port: int
) -> None:
    data, first_dir, second_dir = _dirs(tmp_path, "data", "first", "second")
    url = f"sqlite:///{data / 'accounts.db'}"
    account, caller = _store_a_password(url, first_dir, env={}, port=closed_port)
    key_file = data / KEY_NAME
    assert key_file.exists() and key_file.stat().st_mode & 0o777 == 0o600
    assert not (first_dir / KEY_NAME).exists()
    key_text = key_file.read_text()

    server = ServerProcess(url, second_dir, *LOOPBACK, env={})
    try:
        with AccountClient(server.target, caller) as client:
            # A probe outcome, not FAILED_PRECONDITION: the stored password decrypted.
            result = client.test_connection(account.id)
        assert result.server == f"127.0.0.1:{closed_port}" and not result.success
    finally:
        assert server.stop() == 0
    assert not (second_dir / KEY_NAME).exists()
    assert key_file.read_text() == key_text


def test_keys_that_open_no_stored_credential_refuse_to_start(
    tmp_path: Path, closed_port: int
) -> None:
    data, workdir = _dirs(tmp_path, "data", "run")
    url = f"sqlite:///{data / 'accounts.db'}"
    sealing, other = generate_key(), generate_key()
    _store_a_password(url, workdir, env={"MAILACCOUNTS_CREDENTIAL_KEYS": sealing}, port=closed_port)

    refused = _serve(url, workdir, env={"MAILACCOUNTS_CREDENTIAL_KEYS": other})
    assert refused.returncode == 2, refused.stderr
    assert _key_id(sealing) in refused.stderr and _key_id(other) in refused.stderr
    assert "MAILACCOUNTS_CREDENTIAL_KEYS" in refused.stderr

    # The default key file beside the database is just as foreign: refused, naming both.
    refused = _serve(url, workdir, env={})
    assert refused.returncode == 2, refused.stderr
    key_file = data / KEY_NAME
    assert _key_id(sealing) in refused.stderr
    assert _key_id(key_file.read_text().splitlines()[-1]) in refused.stderr
    assert str(key_file) in refused.stderr

    # A rotation in progress (new primary, the sealing key still configured) starts.
    rotating = ServerProcess(
        url, workdir, env={"MAILACCOUNTS_CREDENTIAL_KEYS": f"{other},{sealing}"}
    )
    assert rotating.stop() == 0


def test_a_relative_key_file_from_another_directory_refuses_to_start(
    tmp_path: Path, closed_port: int
) -> None:
    data, first_dir, second_dir = _dirs(tmp_path, "data", "first", "second")
    url = f"sqlite:///{data / 'accounts.db'}"
    _store_a_password(url, first_dir, "--key-file", KEY_NAME, env={}, port=closed_port)
    sealing = _key_id((first_dir / KEY_NAME).read_text().splitlines()[-1])

    refused = _serve(url, second_dir, "--key-file", KEY_NAME, env={})
    assert refused.returncode == 2, refused.stderr
    assert f"stored credentials are sealed with key ids [{sealing}]" in refused.stderr


def _production_flags(tmp_path: Path, pki: Pki) -> list[str]:
    policy = tmp_path / "policy.toml"
    policy.write_text("")
    # Caller authentication as production demands it, so the key file is what is judged.
    return ["--production", "--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key),
            "--client-ca", str(pki.ca), "--auth", "mtls", "--policy", str(policy)]  # fmt: skip


def test_production_refuses_a_world_readable_key_file(tmp_path: Path, pki: Pki) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    key_file = tmp_path / "keys" / "credential.key"
    key_file.parent.mkdir()
    key_file.write_text(generate_key() + "\n")
    key_file.chmod(0o644)
    flags = [*_production_flags(tmp_path, pki), "--key-file", str(key_file)]

    refused = _serve(url, tmp_path, *flags, env={})
    assert refused.returncode == 2, refused.stderr
    assert str(key_file) in refused.stderr and f"chmod 600 {key_file}" in refused.stderr

    key_file.chmod(0o600)
    health = f"127.0.0.1:{free_port()}"
    server = ServerProcess(
        url, tmp_path, *flags, "--health-listen", health, env={}, health_target=health
    )
    assert server.stop() == 0


def test_production_never_creates_a_key_file(tmp_path: Path, pki: Pki) -> None:
    key_file = tmp_path / "credential.key"
    refused = _serve(
        f"sqlite:///{tmp_path / 'p.db'}",
        tmp_path,
        *_production_flags(tmp_path, pki),
        "--key-file",
        str(key_file),
        env={},
    )
    assert refused.returncode == 2, refused.stderr
    assert "MAILACCOUNTS_CREDENTIAL_KEYS" in refused.stderr and str(key_file) in refused.stderr
    assert not key_file.exists() and not (tmp_path / KEY_NAME).exists()
