"""Every form in which a probe sends a credential, and their removal from server text."""

from __future__ import annotations

import base64
import re
import unicodedata
import urllib.parse
from collections.abc import Iterable

REDACTED = "********"
# A shorter base64 run taken from the middle of an encoding would match ordinary words.
_MIN_BASE64_CORE = 4
_BYTE_ESCAPES = {0x5C: "\\\\", 0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}


def imap_quoted_body(text: str) -> str:
    """``text`` as it stands between the quotes of an IMAP quoted string (imaplib's _quote)."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _bytes_literal_body(data: bytes, quote: str) -> str:
    """How ``repr(data)`` spells ``data`` between its quotes when it quotes with ``quote``.

    imaplib puts reply bytes into its errors this way, so an echo may arrive escaped.
    """
    parts = []
    for byte in data:
        if byte in _BYTE_ESCAPES:
            parts.append(_BYTE_ESCAPES[byte])
        elif chr(byte) == quote:
            parts.append("\\" + quote)
        elif byte < 0x20 or byte >= 0x7F:
            parts.append(f"\\x{byte:02x}")
        else:
            parts.append(chr(byte))
    return "".join(parts)


def _base64_cores(data: bytes) -> list[str]:
    """The part of base64 that ``data`` alone decides, for each of its 3 possible alignments.

    Whatever surrounds ``data`` in an encoded message (a SASL PLAIN string, say), its base64
    text contains one of these.
    """
    cores = []
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + data).decode("ascii")
        first = -(-8 * offset // 6)  # first character made of ``data`` bits only
        last = 8 * (offset + len(data)) // 6  # characters before this one are all ``data``
        core = encoded[first:last]
        if len(core) >= _MIN_BASE64_CORE:
            cores.append(core)
    return cores


def _variants(password: str) -> set[str]:
    """The password and its NFC/NFD spellings (a server may normalise what it echoes)."""
    return {password, *(unicodedata.normalize(form, password) for form in ("NFC", "NFD"))}


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _text_forms(password: str) -> set[str]:
    """Forms that are text: compared without regard to case (a server may upper-case)."""
    forms: set[str] = set()
    for variant in _variants(password):
        # LOGIN sends the password IMAP-quoted, so an echo carries that spelling.
        for sent in {variant, imap_quoted_body(variant)}:
            data = _utf8(sent)
            forms |= {sent, data.hex(), data.decode("latin-1"), urllib.parse.quote(sent, safe="")}
            forms |= {_bytes_literal_body(data, quote) for quote in ("'", '"')}
        # What is left when a decoder drops every non-ASCII character (imapclient does).
        ascii_only = variant.encode("ascii", "ignore").decode("ascii")
        if ascii_only != variant and len(ascii_only) >= _MIN_BASE64_CORE:
            forms.add(ascii_only)
    return forms


def _base64_forms(username: str, password: str) -> set[str]:
    """Base64 of the password and of each SASL message carrying it (case matters here)."""
    forms: set[str] = set()
    user = _utf8(username)
    for variant in _variants(password):
        secret = _utf8(variant)
        sasl_plain = b"\0" + user + b"\0" + secret  # and with the user as authorization id
        for message in (secret, sasl_plain, user + sasl_plain):
            encoded = base64.b64encode(message).decode("ascii")
            forms |= {encoded, encoded.rstrip("=")}
        for sent in {variant, imap_quoted_body(variant)}:
            forms.update(_base64_cores(_utf8(sent)))
    return forms | {form.translate(str.maketrans("+/", "-_")) for form in forms}


def _pattern(forms: Iterable[str], flags: int) -> re.Pattern[str] | None:
    # Longest first, so a form is never cut short by another that is its prefix.
    ordered = sorted({form for form in forms if form}, key=len, reverse=True)
    if not ordered:
        return None
    return re.compile("|".join(re.escape(form) for form in ordered), flags)


class Redactor:
    """Replaces every known form of one credential in server text with ``REDACTED``.

    The forms: the password itself (also NFC/NFD), IMAP-quoted, as Python bytes repr (how
    imaplib quotes replies), as UTF-8 read as Latin-1, hex, percent-encoded, and base64 of it
    and of the SASL PLAIN messages that carry it.
    """

    def __init__(self, username: str, password: str) -> None:
        self._text = _pattern(_text_forms(password), re.IGNORECASE) if password else None
        self._base64 = _pattern(_base64_forms(username, password), 0) if password else None

    def __call__(self, text: str) -> str:
        for pattern in (self._text, self._base64):
            if pattern is not None:
                text = pattern.sub(REDACTED, text)
        return text

    def __repr__(self) -> str:
        return "Redactor(<withheld>)"
