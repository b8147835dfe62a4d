"""Tests that devcerts and the pki fixture produce certificates gRPC mutual TLS accepts."""

from __future__ import annotations

import json
import os
import stat
import tomllib
from collections.abc import Iterator, Mapping
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from mailaccounts_server.devcerts import DEFAULT_CLIENT_IDENTITY, issue, new_ca, write_dev_certs
from support.pki import (
    BILLING_ID,
    DNS_CLIENT_NAME,
    OTHER_ID,
    UNKNOWN_ID,
    CertFiles,
    Pki,
    channel_credentials,
)

_METHOD = "/test.Echo/WhoAmI"
_TIMEOUT_S = 10


def _identity(data: bytes) -> bytes:
    return data


def _who_am_i(request: bytes, context: grpc.ServicerContext) -> bytes:
    # The whole auth context, so the tests can show which keys carry which SAN. grpc-stubs says
    # Mapping[str, bytes], but each value is really a list of bytes.
    context_values = cast(Mapping[str, list[bytes]], context.auth_context())
    auth = {key: [value.decode() for value in values] for key, values in context_values.items()}
    return json.dumps(auth, sort_keys=True).encode()


@contextmanager
def _mtls_server(ca: bytes, key: bytes, cert: bytes) -> Iterator[int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "test.Echo",
        {
            "WhoAmI": grpc.unary_unary_rpc_method_handler(
                _who_am_i, request_deserializer=_identity, response_serializer=_identity
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    credentials = grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield port
    finally:
        server.stop(None)


@pytest.fixture(scope="module")
def port(pki: Pki) -> Iterator[int]:
    with _mtls_server(pki.ca_pem(), pki.server.key_pem(), pki.server.cert_pem()) as bound:
        yield bound


def _call(target: str, credentials: grpc.ChannelCredentials) -> dict[str, list[str]]:
    with grpc.secure_channel(target, credentials) as channel:
        stub = channel.unary_unary(
            _METHOD, request_serializer=_identity, response_deserializer=_identity
        )
        reply: bytes = stub(b"", timeout=_TIMEOUT_S)
    auth: dict[str, list[str]] = json.loads(reply)
    return auth


def _call_as(pki: Pki, client: CertFiles | None, port: int) -> dict[str, list[str]]:
    return _call(f"127.0.0.1:{port}", channel_credentials(pki, client))


def _assert_rejected(pki: Pki, client: CertFiles | None, port: int) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _call_as(pki, client, port)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value


def test_uri_san_client_is_seen_as_its_spiffe_id(pki: Pki, port: int) -> None:
    auth = _call_as(pki, pki.billing, port)
    assert auth["peer_spiffe_id"] == [BILLING_ID], auth
    assert auth["x509_subject_alternative_name"] == [BILLING_ID], auth
    assert auth["transport_security_type"] == ["ssl"], auth


def test_dns_san_client_has_no_spiffe_id(pki: Pki, port: int) -> None:
    auth = _call_as(pki, pki.dns_client, port)
    assert "peer_spiffe_id" not in auth, auth
    assert auth["x509_subject_alternative_name"] == [DNS_CLIENT_NAME], auth
    assert auth["peer_dns"] == [DNS_CLIENT_NAME], auth


def test_other_and_unknown_clients_are_accepted_by_tls(pki: Pki, port: int) -> None:
    # TLS only authenticates; whether an identity is allowed is the policy's job.
    for client, identity in ((pki.other, OTHER_ID), (pki.unknown, UNKNOWN_ID)):
        assert _call_as(pki, client, port)["peer_spiffe_id"] == [identity]


def test_call_without_client_certificate_fails(pki: Pki, port: int) -> None:
    _assert_rejected(pki, None, port)


def test_client_from_foreign_ca_fails(pki: Pki, port: int) -> None:
    _assert_rejected(pki, pki.foreign, port)


def test_expired_client_fails(pki: Pki, port: int) -> None:
    _assert_rejected(pki, pki.expired, port)


def test_server_name_is_verified(pki: Pki, port: int) -> None:
    # The server cert names localhost/127.0.0.1/::1 only: another name must not be accepted.
    credentials = channel_credentials(pki, pki.billing)
    with grpc.secure_channel(
        f"127.0.0.1:{port}", credentials, options=[("grpc.ssl_target_name_override", "evil.test")]
    ) as channel:
        stub = channel.unary_unary(
            _METHOD, request_serializer=_identity, response_deserializer=_identity
        )
        with pytest.raises(grpc.RpcError) as caught:
            stub(b"", timeout=_TIMEOUT_S)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_leaf_extensions() -> None:
    ca = new_ca("ca")
    leaf = issue(ca, "leaf", server=True, client=True).certificate
    with pytest.raises(x509.ExtensionNotFound):
        leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.issuer == ca.certificate.subject
    assert ca.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS8, unencrypted


def test_write_dev_certs(tmp_path: Path) -> None:
    directory = tmp_path / "dev"
    paths = write_dev_certs(directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert {path.name for path in paths.values()} == {
        "ca.pem",
        "server.pem",
        "server.key",
        "client.pem",
        "client.key",
        "policy.toml",
    }
    for name in ("server_key", "client_key"):
        assert stat.S_IMODE(paths[name].stat().st_mode) == 0o600, name
    policy = tomllib.loads(paths["policy"].read_text())
    assert policy == {
        "identities": {
            DEFAULT_CLIENT_IDENTITY: {"tenants": ["*"], "roles": ["accounts", "tenant_admin"]}
        }
    }

    before = {name: path.read_bytes() for name, path in paths.items()}
    with pytest.raises(FileExistsError):
        write_dev_certs(directory)
    assert {name: path.read_bytes() for name, path in paths.items()} == before

    ca = paths["ca"].read_bytes()
    with _mtls_server(ca, paths["server_key"].read_bytes(), paths["server_cert"].read_bytes()) as p:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=paths["client_key"].read_bytes(),
            certificate_chain=paths["client_cert"].read_bytes(),
        )
        auth = _call(f"localhost:{p}", credentials)
    assert auth["peer_spiffe_id"] == [DEFAULT_CLIENT_IDENTITY]


def test_write_dev_certs_overwrite_fixes_key_modes(tmp_path: Path) -> None:
    old = write_dev_certs(tmp_path)
    old["client_key"].chmod(0o644)
    before = old["ca"].read_bytes()
    paths = write_dev_certs(tmp_path, client_identity='spiffe://x/"quoted"', overwrite=True)
    assert paths["ca"].read_bytes() != before
    assert stat.S_IMODE(paths["client_key"].stat().st_mode) == 0o600
    assert list(tomllib.loads(paths["policy"].read_text())["identities"]) == ['spiffe://x/"quoted"']
    assert os.access(paths["server_key"], os.R_OK)
