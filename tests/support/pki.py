"""Session-wide throw-away PKI (CAs, server and client certificates) for real TLS in tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from mailaccounts_server.devcerts import Issued, issue, new_ca

BILLING_ID = "spiffe://corp/ns/billing/sa/api"
OTHER_ID = "spiffe://corp/ns/other/sa/worker"
UNKNOWN_ID = "spiffe://corp/ns/stranger/sa/x"
DNS_CLIENT_NAME = "reports.internal"


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path

    def cert_pem(self) -> bytes:
        return self.cert.read_bytes()

    def key_pem(self) -> bytes:
        return self.key.read_bytes()


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA the server trusts and the clients verify the server with
    foreign_ca: Path  # an unrelated CA nobody trusts
    server: CertFiles  # DNS localhost, IP 127.0.0.1, IP ::1; serverAuth
    billing: CertFiles  # URI BILLING_ID
    other: CertFiles  # URI OTHER_ID
    dns_client: CertFiles  # DNS DNS_CLIENT_NAME only
    unknown: CertFiles  # URI UNKNOWN_ID: trusted CA, but in no policy
    foreign: CertFiles  # URI BILLING_ID, signed by foreign_ca
    expired: CertFiles  # URI BILLING_ID, not_after in the past

    def ca_pem(self) -> bytes:
        return self.ca.read_bytes()

    def foreign_ca_pem(self) -> bytes:
        return self.foreign_ca.read_bytes()


def _save(directory: Path, name: str, issued: Issued) -> CertFiles:
    files = CertFiles(cert=directory / f"{name}.pem", key=directory / f"{name}.key")
    files.cert.write_bytes(issued.cert_pem)
    files.key.write_bytes(issued.key_pem)
    files.key.chmod(0o600)
    return files


def build_pki(directory: Path) -> Pki:
    """Create every certificate of `Pki` under `directory` (which must exist)."""
    ca = new_ca("mailaccounts test CA")
    foreign_ca = new_ca("mailaccounts foreign CA")
    now = datetime.now(UTC)
    (directory / "ca.pem").write_bytes(ca.cert_pem)
    (directory / "foreign_ca.pem").write_bytes(foreign_ca.cert_pem)
    return Pki(
        ca=directory / "ca.pem",
        foreign_ca=directory / "foreign_ca.pem",
        server=_save(
            directory,
            "server",
            issue(ca, "localhost", dns=["localhost"], ips=["127.0.0.1", "::1"], server=True),
        ),
        billing=_save(directory, "billing", issue(ca, "billing", uris=[BILLING_ID], client=True)),
        other=_save(directory, "other", issue(ca, "other", uris=[OTHER_ID], client=True)),
        dns_client=_save(
            directory, "dns_client", issue(ca, "reports", dns=[DNS_CLIENT_NAME], client=True)
        ),
        unknown=_save(directory, "unknown", issue(ca, "stranger", uris=[UNKNOWN_ID], client=True)),
        foreign=_save(
            directory, "foreign", issue(foreign_ca, "billing", uris=[BILLING_ID], client=True)
        ),
        expired=_save(
            directory,
            "expired",
            issue(
                ca,
                "billing",
                uris=[BILLING_ID],
                client=True,
                not_before=now - timedelta(days=10),
                not_after=now - timedelta(days=1),
            ),
        ),
    )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return build_pki(tmp_path_factory.mktemp("pki"))


def channel_credentials(pki: Pki, client: CertFiles | None) -> grpc.ChannelCredentials:
    """Credentials trusting pki.ca, presenting `client`'s certificate when one is given."""
    if client is None:
        return grpc.ssl_channel_credentials(root_certificates=pki.ca_pem())
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca_pem(),
        private_key=client.key_pem(),
        certificate_chain=client.cert_pem(),
    )
