"""No form of the password comes back from a probe, even from a server that echoes it."""

from __future__ import annotations

import base64
import contextlib
import logging
import unicodedata
from typing import BinaryIO

import pytest
from mailaccounts_server.mail import Encryption, ErrorCode, MailProber, ProbeTarget, Protocol
from mailaccounts_server.mail.redaction import Redactor
from support.scripted import Script, scripted_server

USER = "u"
PASSWORDS = ['pa"ss\\word', "pässwörd", "plain-Secret-42"]


def _echo(sent: bytes) -> bytes:
    """What a hostile server answers: the client's words as sent, in hex and decoded."""
    reply = b"you sent: " + sent + b" hex " + sent.hex().encode()
    reply += b" HEX " + sent.hex().upper().encode()
    for word in sent.split():
        with contextlib.suppress(ValueError):
            reply += b" decoded " + base64.b64decode(word, validate=True)
    return reply


def _imap_echo(stream: BinaryIO) -> None:
    stream.write(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] scripted IMAP ready\r\n")
    stream.flush()
    for line in iter(stream.readline, b""):
        tag, _, command = line.strip().partition(b" ")
        verb = command.split(b" ", 1)[0].upper()
        if verb == b"CAPABILITY":
            stream.write(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
        elif verb == b"LOGIN":
            stream.write(tag + b" NO " + _echo(line.strip()) + b"\r\n")
        elif verb == b"AUTHENTICATE":
            stream.write(b"+ \r\n")
            stream.flush()
            answer = stream.readline().strip()
            stream.write(tag + b" NO " + _echo(line.strip() + b" " + answer) + b"\r\n")
        elif verb == b"LOGOUT":
            stream.write(b"* BYE " + _echo(line.strip()) + b"\r\n" + tag + b" OK done\r\n")
            stream.flush()
            return
        else:
            stream.write(tag + b" BAD unexpected\r\n")
        stream.flush()


def _pop3_echo(stream: BinaryIO) -> None:
    stream.write(b"+OK scripted POP3 ready\r\n")
    stream.flush()
    for line in iter(stream.readline, b""):
        verb = line.split(b" ", 1)[0].strip().upper()
        if verb == b"USER":
            stream.write(b"+OK send PASS\r\n")
        elif verb == b"PASS":
            stream.write(b"-ERR " + _echo(line.strip()) + b"\r\n")
        elif verb == b"QUIT":
            stream.write(b"+OK bye\r\n")
            stream.flush()
            return
        else:
            stream.write(b"-ERR unexpected\r\n")
        stream.flush()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _forbidden(password: str) -> dict[str, str]:
    """Every form of ``password`` that must not appear, by name."""
    secret = password.encode()
    quoted = password.replace("\\", "\\\\").replace('"', '\\"')
    plain = b"\0" + USER.encode() + b"\0" + secret
    forms = {
        "literal": password,
        "NFD": unicodedata.normalize("NFD", password),
        "IMAP quoted": f'"{quoted}"',
        "IMAP quoted body": quoted,
        "IMAP literal": f"{{{len(secret)}}}\r\n{password}",
        "UTF-8 bytes (repr)": repr(secret)[2:-1],
        "UTF-8 read as Latin-1": secret.decode("latin-1"),
        "hex": secret.hex(),
        "HEX": secret.hex().upper(),
        "hex of IMAP quoted": quoted.encode().hex(),
        "HEX of IMAP quoted": quoted.encode().hex().upper(),
        "base64": _b64(secret).rstrip("="),
        "base64 SASL PLAIN": _b64(plain),
        "base64 SASL PLAIN, authzid": _b64(USER.encode() + plain),
        "base64 user NUL password": _b64(USER.encode() + b"\0" + secret),
    }
    return forms


def _assert_no_form(password: str, text: str) -> None:
    for name, form in _forbidden(password).items():
        assert form not in text, (name, form, text)


def _run(script: Script, protocol: Protocol, password: str) -> str:
    with scripted_server(script) as port:
        prober = MailProber(allow_networks=["127.0.0.0/8"], allow_ports=[port])
        target = ProbeTarget("127.0.0.1", port, protocol, Encryption.NONE, USER, password, 5)
        result = prober.probe(target)
    assert result.error_code is ErrorCode.AUTH_FAILURE, result.message
    assert result.message.startswith("Authentication failed: you sent: ")
    return result.message


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize(
    ("protocol", "script"), [(Protocol.IMAP, _imap_echo), (Protocol.POP3, _pop3_echo)]
)
def test_echoed_credentials_are_never_returned_or_logged(
    caplog: pytest.LogCaptureFixture, protocol: Protocol, script: Script, password: str
) -> None:
    """A scripted server stands in for a hostile mail server that echoes the login back.

    Its refusal quotes the LOGIN, AUTHENTICATE PLAIN or PASS line it received, as sent, in
    hex, upper-case hex and base64-decoded; the result message (what TestConnection returns
    and stores as last_connection_test) and every log record at DEBUG hold no form of it.
    """
    caplog.set_level(logging.DEBUG)
    message = _run(script, protocol, password)
    _assert_no_form(password, message)
    _assert_no_form(password, caplog.text)
    for record in caplog.records:
        _assert_no_form(password, record.getMessage())


@pytest.mark.parametrize("password", PASSWORDS)
def test_redactor_removes_each_form(password: str) -> None:
    forms = _forbidden(password)
    redact = Redactor(USER, password)
    for name, form in forms.items():
        cleaned = redact(f"server said <{form}> and <{form.upper()}>")
        _assert_no_form(password, cleaned)
        assert cleaned.startswith("server said <"), (name, cleaned)
    assert "withheld" in repr(redact) and password not in repr(redact)


def test_redactor_leaves_other_text_alone() -> None:
    redact = Redactor(USER, "plain-Secret-42")
    text = "[AUTHENTICATIONFAILED] Authentication failed. Try again later"
    assert redact(text) == text
