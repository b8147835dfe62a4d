"""Command line: serve (default), migrate, purge, rotate-keys, recount, generate-key,
dev-certs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from mailaccounts_server import app, workers
from mailaccounts_server.config import (
    Settings,
    add_common_arguments,
    add_serve_arguments,
    settings_from,
)
from mailaccounts_server.credentials import ConfigurationError, generate_key
from mailaccounts_server.devcerts import DEFAULT_CLIENT_IDENTITY, write_dev_certs
from mailaccounts_server.logs import configure_logging

_LOG = logging.getLogger("mailaccounts_server")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailaccounts-server", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the gRPC server")
    add_common_arguments(serve)
    add_serve_arguments(serve)
    for name, text in (
        ("migrate", "apply database migrations and exit"),
        ("purge", "remove soft-deleted accounts past retention, and their credentials"),
        ("rotate-keys", "re-encrypt credentials sealed with an older key"),
        ("recount", "rebuild the per-owner account counters behind totalSize"),
    ):
        add_common_arguments(sub.add_parser(name, help=text))
    sub.add_parser("generate-key", help="print a new credential key")
    certs = sub.add_parser(
        "dev-certs", help="write a throw-away CA, server and client certificate to try mTLS"
    )
    certs.add_argument("directory", type=Path, help="where to write them (created, mode 0700)")
    certs.add_argument(
        "--identity",
        default=DEFAULT_CLIENT_IDENTITY,
        help=f"the client certificate's URI SAN [{DEFAULT_CLIENT_IDENTITY}]",
    )
    certs.add_argument("--force", action="store_true", help="overwrite existing files")
    return parser


def _configure_logging(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "serve"
    if command == "generate-key":
        print(generate_key())
        return 0
    if command == "dev-certs":
        return _dev_certs(args.directory, args.identity, overwrite=args.force)
    if args.command is None:  # bare invocation: serve with defaults
        args = _parser().parse_args(["serve"])
    try:
        # Inside the try: a bad flag or variable is a one-line error, not a traceback.
        settings = settings_from(args)
        _configure_logging(settings)
        if command == "serve" and settings.workers > 1 and settings.worker_index is None:
            return workers.run_workers(
                settings,
                argv if argv is not None else sys.argv[1:],
                prepare=lambda: app.prepare(settings),
            )
        if command == "serve":
            asyncio.run(app.serve(settings))
        elif command == "migrate":
            app.migrate_database(settings)
        elif command == "purge":
            removed = app.purge_once(settings)
            _LOG.info("purged %d accounts", removed)
        elif command == "recount":
            app.recount(settings)
            _LOG.info("account counters rebuilt")
        elif command == "rotate-keys":
            count, unreadable = app.rotate_keys(settings)
            _LOG.info("re-encrypted %d credentials", count)
            if unreadable:
                _LOG.error("%d credentials could not be decrypted with any configured key "
                           "(their accounts need a new password)", unreadable)  # fmt: skip
                return 1
    except ConfigurationError as exc:
        _LOG.error("configuration error: %s", exc)
        return 2
    except app.DatabaseUnreachableError as exc:
        _LOG.error("%s", exc)
        return 3
    return 0


def _dev_certs(directory: Path, identity: str, *, overwrite: bool) -> int:
    try:
        paths = write_dev_certs(directory, client_identity=identity, overwrite=overwrite)
    except FileExistsError as exc:
        print(f"dev-certs: {exc} (use --force to overwrite)", file=sys.stderr)
        return 2
    d = directory
    print(f"wrote {', '.join(str(p) for p in paths.values())}\n")
    print("serve with mutual TLS:")
    print(
        f"  python -m mailaccounts_server serve --tls-cert {d}/server.pem "
        f"--tls-key {d}/server.key --client-ca {d}/ca.pem --auth mtls --policy {d}/policy.toml"
    )
    print("call it:")
    print(f"  grpcurl -cacert {d}/ca.pem -cert {d}/client.pem -key {d}/client.key "
          "-H 'x-tenant-id: t1' -H 'x-user-id: u1' localhost:50051 "
          "mailaccounts.v1.AccountService/ListAccounts")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
