"""Bare grpc.aio echo server: the framework's ceiling the service is compared with.

Built like the service's server (`grpc.aio.server()` with default options, one port, health
service on) but with NO interceptors and a single unary method registered through a generic
handler, bytes in and bytes out (no protobuf): `/bench.Echo/Echo` returns the request. With
--tls-cert/--tls-key (and --client-ca for mutual TLS) the port is TLS, so the baseline pays the
same record and handshake costs as a TLS service.

    python -m bench.echo_server --port 50099
    python -m bench.echo_server --port 50099 --tls-cert s.pem --tls-key s.key --client-ca ca.pem
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

ECHO_METHOD = "/bench.Echo/Echo"


async def _echo(request: bytes, context: Any) -> bytes:
    return request


def _handler() -> grpc.GenericRpcHandler:  # type: ignore[type-arg]
    return grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )


def _credentials(cert: Path, key: Path, client_ca: Path | None) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())],
        root_certificates=client_ca.read_bytes() if client_ca else None,
        require_client_auth=client_ca is not None,
    )


async def serve(listen: str, credentials: grpc.ServerCredentials | None = None) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_handler(),))
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = (
        server.add_insecure_port(listen)
        if credentials is None
        else server.add_secure_port(listen, credentials)
    )
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0.5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.echo_server", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--tls-cert", type=Path, help="server certificate chain (PEM)")
    parser.add_argument("--tls-key", type=Path, help="server private key (PEM)")
    parser.add_argument("--client-ca", type=Path, help="CA client certificates must chain to")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key) or (args.client_ca and not args.tls_cert):
        parser.error("--tls-cert and --tls-key go together; --client-ca needs both")
    credentials = (
        _credentials(args.tls_cert, args.tls_key, args.client_ca) if args.tls_cert else None
    )
    asyncio.run(serve(f"{args.host}:{args.port}", credentials))


if __name__ == "__main__":
    main()
