"""Pure mapping of IMAP LIST entries to :class:`Folder` values.

The kind comes from RFC 6154 special-use flags when the server sends them, otherwise from
well-known (also localized and Gmail) names of the last path segment.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterable, Sequence

from mailaccounts_server.mail.types import Folder, FolderKind

_LOG = logging.getLogger(__name__)

# RFC 6154 special-use attributes, plus the Gmail XLIST variants some servers still send.
_FLAG_KINDS: dict[str, FolderKind] = {
    "\\all": FolderKind.ALL,
    "\\archive": FolderKind.ARCHIVE,
    "\\drafts": FolderKind.DRAFTS,
    "\\flagged": FolderKind.FLAGGED,
    "\\junk": FolderKind.JUNK,
    "\\sent": FolderKind.SENT,
    "\\trash": FolderKind.TRASH,
    "\\inbox": FolderKind.INBOX,
    "\\allmail": FolderKind.ALL,
    "\\spam": FolderKind.JUNK,
    "\\starred": FolderKind.FLAGGED,
}

_NOT_SELECTABLE = frozenset({"\\noselect", "\\nonexistent"})

_NAMES: dict[FolderKind, tuple[str, ...]] = {
    FolderKind.SENT: (
        "sent",
        "sent items",
        "sent messages",
        "sent mail",
        "sent-mail",
        "outbox sent",
        "gesendet",
        "gesendete elemente",
        "gesendete objekte",
        "gesendete nachrichten",
        "envoyés",
        "éléments envoyés",
        "messages envoyés",
        "enviados",
        "elementos enviados",
        "posta inviata",
        "inviata",
        "verzonden",
        "verzonden items",
        "skickat",
        "wysłane",
    ),
    FolderKind.DRAFTS: (
        "drafts",
        "draft",
        "entwürfe",
        "entwurf",
        "brouillons",
        "borradores",
        "bozze",
        "concepten",
        "utkast",
        "kopie robocze",
    ),
    FolderKind.TRASH: (
        "trash",
        "deleted items",
        "deleted messages",
        "deleted",
        "bin",
        "papierkorb",
        "gelöschte elemente",
        "gelöschte objekte",
        "corbeille",
        "éléments supprimés",
        "papelera",
        "elementos eliminados",
        "cestino",
        "prullenbak",
        "papperskorg",
        "kosz",
    ),
    FolderKind.JUNK: (
        "junk",
        "spam",
        "junk e-mail",
        "junk email",
        "junk mail",
        "bulk mail",
        "junk-e-mail",
        "courrier indésirable",
        "correo no deseado",
        "posta indesiderata",
        "ongewenste e-mail",
    ),
    FolderKind.ARCHIVE: ("archive", "archives", "archiv", "archivo", "archivio", "archief"),
    FolderKind.ALL: ("all mail", "alle nachrichten", "tous les messages"),
    FolderKind.FLAGGED: ("starred", "flagged", "markiert", "suivis"),
}

_NAME_KINDS: dict[str, FolderKind] = {
    unicodedata.normalize("NFC", name).casefold(): kind
    for kind, names in _NAMES.items()
    for name in names
}


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _normalized_flags(flags: Iterable[bytes | str]) -> list[str]:
    return [_text(flag).casefold() for flag in flags]


def display_name(name: str, delimiter: bytes | str | None) -> str:
    """Last path segment of ``name`` using the server's hierarchy delimiter (NIL: whole name)."""
    delim = _text(delimiter)
    if not delim:
        return name
    segments = [segment for segment in name.split(delim) if segment]
    return segments[-1] if segments else name


def kind_from_flags(flags: Iterable[bytes | str]) -> FolderKind | None:
    """Kind given by a special-use flag, or ``None`` when no such flag is present."""
    for flag in _normalized_flags(flags):
        kind = _FLAG_KINDS.get(flag)
        if kind is not None:
            return kind
    return None


def kind_from_name(name: str, delimiter: bytes | str | None) -> FolderKind:
    """Kind guessed from the folder name (INBOX, then well-known last segments)."""
    if name.casefold() == "inbox":
        return FolderKind.INBOX
    last = unicodedata.normalize("NFC", display_name(name, delimiter)).casefold().strip()
    return _NAME_KINDS.get(last, FolderKind.OTHER)


def folder_kind(
    flags: Iterable[bytes | str], name: str, delimiter: bytes | str | None
) -> FolderKind:
    """Kind of a folder: special-use flag first, then the name, else OTHER."""
    if name.casefold() == "inbox":
        return FolderKind.INBOX
    return kind_from_flags(flags) or kind_from_name(name, delimiter)


def is_selectable(flags: Iterable[bytes | str]) -> bool:
    """False for ``\\Noselect`` and ``\\NonExistent`` mailboxes."""
    return not any(flag in _NOT_SELECTABLE for flag in _normalized_flags(flags))


def make_folder(flags: Sequence[bytes | str], delimiter: bytes | str | None, name: str) -> Folder:
    """Build a :class:`Folder` from one ``(flags, delimiter, name)`` LIST entry."""
    return Folder(
        name=name,
        display_name=display_name(name, delimiter),
        kind=folder_kind(flags, name, delimiter),
        selectable=is_selectable(flags),
    )


def map_folders(
    entries: Iterable[tuple[Sequence[bytes | str], bytes | str | None, str | bytes | int]],
) -> list[Folder]:
    """Map every LIST entry (as returned by ``IMAPClient.list_folders``) to a Folder."""
    folders = [
        make_folder(flags, delim, _text(str(name) if isinstance(name, int) else name))
        for flags, delim, name in entries
    ]
    _LOG.debug("mapped %d folders", len(folders))
    return folders
