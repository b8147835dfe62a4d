"""Throw-away Dovecot IMAP/POP3 server, test certificates and dead-end ports for the test suite.

``start_dovecot`` writes a private configuration (TLS certificate from a test CA, passwd-file
users, maildir with special-use and extra folders, a few INBOX messages) and runs
``dovecot -F`` on free loopback ports. The session fixture ``dovecot`` wraps it; ``blackhole_port``
and ``closed_port`` give ports that accept-but-never-answer and refuse connections.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from mailaccounts_server.devcerts import issue, new_ca

from support.services import require_service

_LOG = logging.getLogger(__name__)

SKIP_MESSAGE = "Dovecot is not installed (run scripts/install-system-deps.sh as root)"
HOST = "127.0.0.1"
USER = "alice@example.com"
PASSWORD = "Al1ce-S3cret!pw"
OTHER_USER = "bob@example.com"
OTHER_PASSWORD = "B0b-S3cret!pw"
_USERS = ((USER, PASSWORD), (OTHER_USER, OTHER_PASSWORD))
# Folders created on disk besides the special-use ones (names as the IMAP client sees them).
EXTRA_FOLDERS = ("Projects/2026", "Café")
INBOX_MESSAGES = 3
_START_TIMEOUT_S = 20
_STOP_TIMEOUT_S = 10
_DOVECOT_CANDIDATES = ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot")


def find_dovecot() -> str | None:
    """Path of the dovecot binary, or None when Dovecot is not installed."""
    for candidate in _DOVECOT_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("dovecot")


@dataclass
class DovecotServer:
    """A running Dovecot instance; ``stop()`` is idempotent."""

    host: str
    ports: dict[str, int]
    ca_file: str
    other_ca_file: str
    user: str
    password: str
    other_user: str
    other_password: str
    workdir: Path
    log_file: Path
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _owned_dir: Path | None = field(default=None, repr=False)

    @property
    def imaps(self) -> int:
        return self.ports["imaps"]

    @property
    def imap(self) -> int:
        return self.ports["imap"]

    @property
    def pop3s(self) -> int:
        return self.ports["pop3s"]

    @property
    def pop3(self) -> int:
        return self.ports["pop3"]

    def stop(self) -> None:
        """Terminate the master process (it stops its children) and wait for it."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(_STOP_TIMEOUT_S)
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)
            self._owned_dir = None


# --- certificates -------------------------------------------------------------------------


def write_certificates(directory: Path) -> dict[str, Path]:
    """Write ca.pem, other-ca.pem (unrelated CA), server.pem and server.key into ``directory``
    (the service's own throw-away certificate maker, mailaccounts_server.devcerts)."""
    ca = new_ca("mailaccounts test CA", days=2)
    other = new_ca("mailaccounts unrelated CA", days=2)
    server = issue(ca, "localhost", dns=["localhost"], ips=[HOST], server=True, days=2)
    paths = {
        "ca": directory / "ca.pem",
        "other_ca": directory / "other-ca.pem",
        "cert": directory / "server.pem",
        "key": directory / "server.key",
    }
    paths["ca"].write_bytes(ca.cert_pem)
    paths["other_ca"].write_bytes(other.cert_pem)
    paths["cert"].write_bytes(server.cert_pem)
    paths["key"].write_bytes(server.key_pem)
    paths["key"].chmod(0o600)
    return paths


# --- mail store and configuration ---------------------------------------------------------


def _mutf7(name: str) -> str:
    """Encode a folder name segment in IMAP modified UTF-7 (Dovecot's on-disk maildir names)."""
    from imapclient.imap_utf7 import encode  # imapclient is a project dependency

    encoded: bytes = encode(name)
    return encoded.decode("ascii")


def _message(number: int) -> bytes:
    body = f"This is test message number {number}.\r\n" * 5
    return (
        f"From: Sender {number} <sender{number}@example.org>\r\n"
        f"To: {USER}\r\n"
        f"Subject: Test message {number}\r\n"
        f"Date: Mon, 5 Jan 2026 10:0{number}:00 +0000\r\n"
        f"Message-ID: <test-{number}@example.org>\r\n"
        "\r\n"
        f"{body}"
    ).encode()


def _write_maildir(home: Path) -> None:
    maildir = home / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    for folder in EXTRA_FOLDERS:
        disk_name = "." + ".".join(_mutf7(part) for part in folder.split("/"))
        for sub in ("cur", "new", "tmp"):
            (maildir / disk_name / sub).mkdir(parents=True, exist_ok=True)
    for number in range(1, INBOX_MESSAGES + 1):
        (maildir / "new" / f"1767607200.M{number}P1.mailaccounts-test").write_bytes(
            _message(number)
        )


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all held open until every one is chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _accounts() -> tuple[str, str, int, int]:
    """(login user, internal user, uid, gid) the Dovecot processes run as."""
    if os.geteuid() == 0:
        entry = pwd.getpwnam("dovecot")
        return "dovenull", "dovecot", entry.pw_uid, entry.pw_gid
    me = pwd.getpwuid(os.geteuid())
    return me.pw_name, me.pw_name, me.pw_uid, me.pw_gid


def _config(base: Path, certs: dict[str, Path], ports: dict[str, int]) -> str:
    login_user, internal_user, uid, gid = _accounts()
    dh = Path("/usr/share/dovecot/dh.pem")
    special = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash"}
    special |= {"Junk": "\\Junk", "Archive": "\\Archive"}
    mailboxes = "".join(
        f"  mailbox {name} {{\n    special_use = {flag}\n    auto = subscribe\n  }}\n"
        for name, flag in special.items()
    )
    return f"""# written by tests/support/dovecot.py
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
info_log_path = {base}/dovecot.log
protocols = imap pop3
listen = {HOST}
ssl = yes
ssl_cert = <{certs["cert"]}
ssl_key = <{certs["key"]}
{f"ssl_dh = <{dh}" if dh.exists() else ""}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_login_user = {login_user}
default_internal_user = {internal_user}
first_valid_uid = {min(uid, 100)}
first_valid_gid = {min(gid, 100)}
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={base}/mail/%d/%n
}}
namespace inbox {{
  inbox = yes
  separator = /
{mailboxes}}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = {HOST}
    port = {ports["imap"]}
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {ports["imaps"]}
    ssl = yes
  }}
}}
service pop3-login {{
  chroot =
  inet_listener pop3 {{
    address = {HOST}
    port = {ports["pop3"]}
  }}
  inet_listener pop3s {{
    address = {HOST}
    port = {ports["pop3s"]}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  # no per-IP brute-force penalty: the tests fail logins on purpose from 127.0.0.1
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


def _reachable_by_others(path: Path) -> bool:
    """True if every directory up to ``path`` can be traversed by other users."""
    for directory in [path, *path.parents]:
        if not directory.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid)


def _wait_until_listening(server: DovecotServer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    pending = set(server.ports.values())
    while pending:
        if process.poll() is not None:
            raise RuntimeError(f"dovecot exited with status {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"dovecot ports {sorted(pending)} not listening in time")
        for port in sorted(pending):
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
                pending.discard(port)
        if pending:
            time.sleep(0.05)


def start_dovecot(workdir: Path) -> DovecotServer:
    """Write a configuration under ``workdir`` (or a reachable temp dir) and start Dovecot."""
    binary = find_dovecot()
    if binary is None:
        raise RuntimeError(SKIP_MESSAGE)
    workdir.mkdir(parents=True, exist_ok=True)
    owned: Path | None = None
    base = workdir
    if os.geteuid() == 0 and not _reachable_by_others(workdir):
        # pytest's temp root is 0700: the dovecot/dovenull accounts could not reach the mail
        # store or the login sockets there, so use a private directory in the system tmp.
        owned = base = Path(tempfile.mkdtemp(prefix="mailaccounts-dovecot-"))
        base.chmod(0o755)
    try:
        _login_user, _internal_user, uid, gid = _accounts()
        certs = write_certificates(base)
        (base / "users").write_text(
            "".join(f"{user}:{{PLAIN}}{pw}::::::nodelay=y\n" for user, pw in _USERS)
        )
        for user, _password in _USERS:
            local, domain = user.split("@")
            _write_maildir(base / "mail" / domain / local)
        if os.geteuid() == 0:
            _chown_tree(base / "mail", uid, gid)
        ports = dict(zip(("imaps", "imap", "pop3s", "pop3"), _free_ports(4), strict=True))
        conf = base / "dovecot.conf"
        conf.write_text(_config(base, certs, ports))
        log_file = base / "dovecot.log"
        with open(base / "dovecot.out", "wb") as out:
            process = subprocess.Popen(
                [binary, "-F", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT
            )
        server = DovecotServer(
            host=HOST,
            ports=ports,
            ca_file=str(certs["ca"]),
            other_ca_file=str(certs["other_ca"]),
            user=USER,
            password=PASSWORD,
            other_user=OTHER_USER,
            other_password=OTHER_PASSWORD,
            workdir=base,
            log_file=log_file,
            _process=process,
            _owned_dir=owned,
        )
        try:
            _wait_until_listening(server, process)
        except RuntimeError as exc:
            server._owned_dir = None  # keep the files for the error message below
            server.stop()
            logs = "".join(
                path.read_text(errors="replace")[-3000:]
                for path in (log_file, base / "dovecot.out")
                if path.exists()
            )
            raise RuntimeError(f"Dovecot did not start: {exc}\n{logs}") from exc
        atexit.register(server.stop)  # safety net if fixture teardown is skipped
        _LOG.info("Dovecot test server on %s ports %s (dir %s)", HOST, ports, base)
        return server
    except BaseException:
        if owned is not None:
            shutil.rmtree(owned, ignore_errors=True)
        raise


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """One Dovecot server for the whole test session (skipped if Dovecot is absent)."""
    require_service(find_dovecot() is not None, SKIP_MESSAGE)
    server = start_dovecot(tmp_path_factory.mktemp("dovecot"))
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def blackhole() -> Iterator[int]:
    """A loopback port whose kernel backlog accepts connections that never get a byte."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((HOST, 0))
        sock.listen(16)
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture
def blackhole_port() -> Iterator[int]:
    """Port on 127.0.0.1 that accepts TCP connections but never answers."""
    with blackhole() as port:
        yield port


def closed_port_number() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def closed_port() -> int:
    """Port on 127.0.0.1 that refuses connections."""
    return closed_port_number()
