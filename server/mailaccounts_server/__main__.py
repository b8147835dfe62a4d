"""Command line: serve (default), migrate, purge, rotate-keys, recount, generate-key."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from mailaccounts_server import app, workers
from mailaccounts_server.config import (
    Settings,
    add_common_arguments,
    add_serve_arguments,
    settings_from,
)
from mailaccounts_server.credentials import ConfigurationError, generate_key
from mailaccounts_server.storage import migrate
from mailaccounts_server.storage.database import Database

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
    return parser


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "serve"
    if command == "generate-key":
        print(generate_key())
        return 0
    if args.command is None:  # bare invocation: serve with defaults
        args = _parser().parse_args(["serve"])
    settings = settings_from(args)
    _configure_logging(settings)
    try:
        if command == "serve" and settings.workers > 1 and settings.worker_index is None:
            return workers.run_workers(
                settings,
                argv if argv is not None else sys.argv[1:],
                prepare=lambda: app.prepare(settings),
            )
        if command == "serve":
            asyncio.run(app.serve(settings))
        elif command == "migrate":
            db = Database(settings.database_url)
            migrate.upgrade(db.engine)
            db.dispose()
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
