"""Read caps: a hostile mail server cannot make a probe hold an unbounded reply in memory."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from mailaccounts_server.mail import Encryption, ErrorCode, MailProber, ProbeTarget, Protocol
from mailaccounts_server.mail.limits import (
    MAX_FOLDER_TEXT_BYTES,
    MAX_FOLDERS,
    MAX_LINE_BYTES,
    MAX_RESPONSE_BYTES,
)
from support.scripted import Script, scripted_server

MiB = 1024 * 1024
TEN_MB_LINE = 10 * 1000 * 1000


def _folders(count: int) -> Iterator[bytes]:
    """LIST entries made one at a time, so the server itself holds almost nothing."""
    for number in range(count):
        yield b'* LIST (\\HasNoChildren) "/" "Folder/%06d"\r\n' % number


def _endless_line() -> Iterator[bytes]:
    """Ten megabytes without a line end, in 64 KiB pieces."""
    piece = b"x" * 65536
    for _ in range(TEN_MB_LINE // len(piece) + 1):
        yield piece


def _imap(list_reply: Callable[[], Iterable[bytes]], greeting: Iterable[bytes] = ()) -> Script:
    """An IMAP server that accepts any login and answers LIST with ``list_reply()``."""

    def script(stream: BinaryIO) -> None:
        for piece in greeting:
            stream.write(piece)
        stream.write(b"* OK scripted IMAP ready\r\n")
        stream.flush()
        for line in iter(stream.readline, b""):
            tag, _, command = line.strip().partition(b" ")
            verb = command.split(b" ", 1)[0].upper()
            if verb == b"CAPABILITY":
                stream.write(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
            elif verb == b"LOGIN":
                stream.write(tag + b" OK logged in\r\n")
            elif verb == b"LIST":
                for entry in list_reply():
                    stream.write(entry)
                stream.write(tag + b" OK LIST done\r\n")
            elif verb == b"LOGOUT":
                stream.write(b"* BYE bye\r\n" + tag + b" OK done\r\n")
                stream.flush()
                return
            else:
                stream.write(tag + b" BAD unexpected\r\n")
            stream.flush()

    return script


def _probe(port: int, protocol: Protocol = Protocol.IMAP, timeout: float = 30) -> ProbeTarget:
    return ProbeTarget("127.0.0.1", port, protocol, Encryption.NONE, "u", "pw-1", timeout)


def _prober(port: int) -> MailProber:
    return MailProber(allow_networks=["127.0.0.0/8"], allow_ports=[port])


def _memory_kib(field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process, in KiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure_in_child(folders: int) -> None:
    """Probe a server listing ``folders`` folders; print the result and memory growth as JSON.

    Run in a fresh interpreter, so that earlier tests' garbage does not blur the numbers. A
    first small probe warms up imports and caches. Growth is the peak RSS during the probe
    (VmHWM, reset just before it) minus the RSS just before it: the whole process, the
    scripted server thread included.
    """
    with scripted_server(_imap(lambda: _folders(10))) as port:
        _prober(port).probe(_probe(port))
    gc.collect()
    with scripted_server(_imap(lambda: _folders(folders))) as port:
        # Reset the peak to the current RSS: the child's peak starts out as that of the pytest
        # process it was forked from, and imports peak above the RSS they leave behind.
        Path("/proc/self/clear_refs").write_text("5")
        before = _memory_kib("VmRSS")
        started = time.monotonic()
        result = _prober(port).probe(_probe(port))
        elapsed = time.monotonic() - started
        after = _memory_kib("VmHWM")
    # The same probe again with Python's own allocations traced: the peak of live objects.
    with scripted_server(_imap(lambda: _folders(folders))) as port:
        tracemalloc.start()
        _prober(port).probe(_probe(port))
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    report = {
        "success": result.success,
        "message": result.message,
        "folders": len(result.folders),
        "folders_total": result.folders_total,
        "folders_truncated": result.folders_truncated,
        "rss_growth_bytes": (after - before) * 1024,
        "traced_peak_bytes": traced_peak,
        "seconds": elapsed,
    }
    print(json.dumps(report))


def test_huge_folder_list_is_capped_in_bounded_memory() -> None:
    """A scripted server stands in for a hostile mail server listing 200,000 folders.

    Measured in a child process: the growth of its peak RSS (the whole process, the scripted
    server thread included) and, in a second run, the peak of Python allocations.
    """
    tests = Path(__file__).parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tests), os.environ.get("PYTHONPATH", "")]),
    }
    # mailaccounts_server.domain first: importing the mail package first runs into the
    # domain <-> mail import cycle (the server and pytest import the domain first too).
    module = Path(__file__).stem
    code = f"import mailaccounts_server.domain, {module}; {module}.measure_in_child(200_000)"
    child = subprocess.run(
        [sys.executable, "-c", code], cwd=tests, env=env, capture_output=True, text=True, timeout=90
    )
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout.strip().splitlines()[-1])
    print(report)
    assert report["success"], report
    assert report["folders"] == MAX_FOLDERS
    assert report["folders_truncated"] is True
    # 200,000 entries are about 9 MB: reading stopped at the total cap, so the count is unknown.
    assert report["folders_total"] is None
    assert f"cut off after {MAX_FOLDERS} folders" in report["message"]
    assert f"more than {MAX_RESPONSE_BYTES} bytes" in report["message"]
    assert report["rss_growth_bytes"] < 64 * MiB, report
    assert report["traced_peak_bytes"] < 64 * MiB, report


def test_folders_beyond_the_cap_are_counted() -> None:
    """A scripted server stands in for a hostile mail server listing 5,000 folders."""
    with scripted_server(_imap(lambda: _folders(5000))) as port:
        result = _prober(port).probe(_probe(port))
    assert result.success, result.message
    assert len(result.folders) == MAX_FOLDERS
    assert result.folders[0].name == "Folder/000000"
    assert (result.folders_total, result.folders_truncated) == (5000, True)
    assert result.message == "Connection successful; showing the first 1000 of 5000 folders"


def test_long_folder_names_keep_the_answer_small() -> None:
    """A scripted server stands in for a hostile mail server with 60,000-byte folder names.

    Names are capped in total, so TestConnection's answer stays well below gRPC's default
    4 MiB receive limit.
    """

    def long_names() -> Iterator[bytes]:
        for number in range(1000):
            yield b'* LIST () "/" "%06d%s"\r\n' % (number, b"n" * 60_000)

    with scripted_server(_imap(long_names)) as port:
        result = _prober(port).probe(_probe(port))
    assert result.success, result.message
    text = sum(len(f.name.encode()) + len(f.display_name.encode()) for f in result.folders)
    assert 0 < text <= MAX_FOLDER_TEXT_BYTES
    assert result.folders_truncated
    assert [f.name[:6] for f in result.folders] == [f"{n:06d}" for n in range(len(result.folders))]


def test_short_folder_list_is_complete() -> None:
    """A scripted server stands in for a mail server with a few folders: nothing is cut."""
    with scripted_server(_imap(lambda: _folders(3))) as port:
        result = _prober(port).probe(_probe(port))
    assert result.message == "Connection successful"
    assert (len(result.folders), result.folders_total, result.folders_truncated) == (3, 3, False)


def test_endless_greeting_line_is_cut_off() -> None:
    """A scripted server stands in for a hostile mail server: a 10 MB greeting, no CRLF.

    The probe stops after one line cap, so its peak of Python allocations stays far below
    imaplib's own 1 MB line limit.
    """
    script = _imap(lambda: (), greeting=[b"* OK ", *_endless_line()])
    with scripted_server(script) as port:
        prober = _prober(port)
        tracemalloc.start()
        try:
            result = prober.probe(_probe(port, timeout=10))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert result.error_code is ErrorCode.PROTOCOL_ERROR
    assert result.message == (
        "Reply too large while waiting for the server greeting: "
        f"a line longer than {MAX_LINE_BYTES} bytes"
    )
    assert peak < 512 * 1024, peak


def test_endless_line_in_folder_list_keeps_the_folders_read() -> None:
    """A scripted server stands in for a hostile mail server: 50 folders, then 10 MB, no CRLF."""
    with scripted_server(_imap(lambda: [*_folders(50), *_endless_line()])) as port:
        started = time.monotonic()
        result = _prober(port).probe(_probe(port, timeout=10))
        elapsed = time.monotonic() - started
    assert result.success, result.message
    assert (len(result.folders), result.folders_total, result.folders_truncated) == (50, None, True)
    assert "cut off after 50 folders" in result.message
    assert f"a line longer than {MAX_LINE_BYTES} bytes" in result.message
    assert elapsed < 5, elapsed


def test_announced_huge_literal_is_refused_before_reading() -> None:
    """A scripted server stands in for a hostile mail server announcing a 100 MB literal."""
    reply = [*_folders(2), b'* LIST () "/" {100000000}\r\n']
    with scripted_server(_imap(lambda: reply)) as port:
        started = time.monotonic()
        result = _prober(port).probe(_probe(port, timeout=10))
        elapsed = time.monotonic() - started
    assert result.success, result.message
    assert (len(result.folders), result.folders_truncated) == (2, True)
    assert "a literal of 100000000 bytes" in result.message
    assert elapsed < 5, elapsed


def test_endless_pop3_capability_list_is_cut_off() -> None:
    """A scripted server stands in for a hostile POP3 server whose CAPA reply never ends."""

    def script(stream: BinaryIO) -> None:
        stream.write(b"+OK scripted POP3 ready\r\n")
        stream.flush()
        if stream.readline().upper().startswith(b"CAPA"):
            stream.write(b"+OK\r\n")
            while True:
                stream.write(b"X\r\n" * 4096)

    with scripted_server(script) as port:
        target = ProbeTarget("127.0.0.1", port, Protocol.POP3, Encryption.STARTTLS, "u", "pw-1", 10)
        started = time.monotonic()
        result = _prober(port).probe(target)
        elapsed = time.monotonic() - started
    assert result.error_code is ErrorCode.PROTOCOL_ERROR
    assert result.message.startswith("Reply too large while negotiating STLS: more than")
    assert elapsed < 5, elapsed
