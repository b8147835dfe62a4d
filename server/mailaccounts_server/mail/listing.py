"""Streams an IMAP LIST reply into at most ``MAX_FOLDERS`` folders, counting the rest."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from imapclient.exceptions import ProtocolError
from imapclient.imap_utf7 import decode as decode_utf7
from imapclient.response_parser import parse_response

from mailaccounts_server.mail.folders import make_folder
from mailaccounts_server.mail.limits import MAX_FOLDER_TEXT_BYTES, MAX_FOLDERS, ReplyTooLarge
from mailaccounts_server.mail.types import ErrorCode, Folder, ProbeError

_LOG = logging.getLogger(__name__)

MALFORMED = "Listing folders failed: the server sent a malformed LIST reply"


@dataclasses.dataclass(frozen=True)
class Listing:
    """The folders one probe read; ``total`` is None when reading stopped before the end."""

    folders: list[Folder]
    total: int | None
    stopped: str | None = None

    @property
    def truncated(self) -> bool:
        """True when ``folders`` is not the server's whole list."""
        return self.total is None or self.total > len(self.folders)


class FolderCollector:
    """Receives the LIST entries one by one while ``imaplib`` reads them.

    imaplib would otherwise keep every entry of the reply until the command completes, and
    imapclient would parse them all at once. Here the first ``limit`` entries (as long as
    their names fit in ``MAX_FOLDER_TEXT_BYTES``) become folders and later ones are only
    counted, so memory stays bounded however long the list is.
    """

    def __init__(self, clean: Callable[[str], str], limit: int = MAX_FOLDERS) -> None:
        self.folders: list[Folder] = []
        self.total = 0
        self._clean = clean
        self._limit = limit
        self._text_bytes = 0
        self._full = False
        # Pieces of an entry whose mailbox name came as a literal: (line, literal) tuples
        # until imaplib hands over the rest of the line as plain bytes.
        self._pending: list[Any] = []

    def feed(self, item: Any) -> None:
        """Take one item as ``imaplib._append_untagged`` would store it for ``LIST``."""
        if isinstance(item, tuple):
            self._pending.append(item)
            return
        if not self._pending and not item:
            return
        pieces = [*self._pending, item]
        self._pending = []
        self.total += 1
        if self._full or len(self.folders) >= self._limit:
            return
        folder = self._folder([piece for piece in pieces if piece])
        size = sum(
            len(text.encode("utf-8", "replace")) for text in (folder.name, folder.display_name)
        )
        if self._text_bytes + size > MAX_FOLDER_TEXT_BYTES:
            self._full = True  # keep the list a prefix of the server's: no later short names
            return
        self._text_bytes += size
        self.folders.append(folder)

    def _folder(self, pieces: list[Any]) -> Folder:
        try:
            parsed = parse_response(pieces)
        except (ProtocolError, ValueError) as exc:
            raise ProbeError(ErrorCode.PROTOCOL_ERROR, MALFORMED) from exc
        if len(parsed) != 3 or not isinstance(parsed[0], tuple):
            raise ProbeError(ErrorCode.PROTOCOL_ERROR, MALFORMED)
        flags, delimiter, raw = parsed
        if not all(isinstance(flag, bytes | str) for flag in flags):
            raise ProbeError(ErrorCode.PROTOCOL_ERROR, MALFORMED)
        if isinstance(raw, int):  # a quoted numeric name parses as a number
            name = str(raw)
        elif isinstance(raw, bytes | str):
            name = decode_utf7(raw)
        else:
            raise ProbeError(ErrorCode.PROTOCOL_ERROR, MALFORMED)
        if not isinstance(delimiter, bytes | str | None):
            raise ProbeError(ErrorCode.PROTOCOL_ERROR, MALFORMED)
        folder = make_folder(flags, delimiter, name)
        return Folder(
            name=self._clean(folder.name),
            display_name=self._clean(folder.display_name),
            kind=folder.kind,
            selectable=folder.selectable,
        )


def list_folders(imap: Any, clean: Callable[[str], str]) -> Listing:
    """``LIST "" "*"`` on an ``imaplib`` connection that hands LIST entries to ``imap.listing``.

    A reply over the read caps ends the list early with the folders read so far (or the
    ReplyTooLarge error when there are none); imaplib errors are left to the caller.
    """
    collector = FolderCollector(clean)
    imap.listing = collector
    try:
        typ, data = imap._simple_command("LIST", '""', '"*"')
    except ReplyTooLarge as exc:
        if not collector.folders:
            raise
        return Listing(collector.folders, None, exc.reason)
    finally:
        imap.listing = None
    if typ != "OK":
        said = data[-1] if data else b""
        text = said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)
        raise ProbeError(ErrorCode.PROTOCOL_ERROR, f"Listing folders failed: {text}")
    return Listing(collector.folders, collector.total)
