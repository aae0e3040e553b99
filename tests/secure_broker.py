"""A real mosquitto that admits one user by password, plain and over TLS, on 127.0.0.1.

The password file is made by ``mosquitto_passwd -b``; the CA, the broker's
certificate (for 127.0.0.1 and localhost) and a client certificate by the
``openssl`` command line. Nothing here leaves the loopback interface.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_for_port

USER, PASSWORD = "coop", "s3cret-for-tests"


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_pki(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate signed by it, and a client certificate; PEM paths by name."""
    directory.mkdir(parents=True, exist_ok=True)
    p = {name: directory / f"{name}.pem" for name in
         ("ca", "ca_key", "server", "server_key", "client", "client_key")}
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=Commonwatt test CA", "-keyout", p["ca_key"], "-out", p["ca"])
    ext = directory / "san.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
    for who, cn in (("server", "127.0.0.1"), ("client", "commonwatt")):
        csr = directory / f"{who}.csr"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
                 "-keyout", p[f"{who}_key"], "-out", csr)
        _openssl("x509", "-req", "-in", csr, "-CA", p["ca"], "-CAkey", p["ca_key"],
                 "-CAcreateserial", "-days", "2", "-out", p[who],
                 *(["-extfile", ext] if who == "server" else []))
    return p


@dataclass(frozen=True)
class SecureBroker:
    """Where the broker listens and the files a client needs."""

    port: int
    tls_port: int
    pki: dict[str, Path]


@contextmanager
def secure_mosquitto(directory: Path) -> Iterator[SecureBroker]:
    """mosquitto with ``allow_anonymous false``: plain TCP on ``port``, TLS on ``tls_port``
    (a client certificate accepted but not required)."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    passwd_tool = shutil.which("mosquitto_passwd")
    if not Path(binary).exists() or passwd_tool is None:
        pytest.fail("mosquitto and mosquitto_passwd are needed: run the README's test command")
    directory.mkdir(parents=True, exist_ok=True)
    passwd = directory / "passwd"
    subprocess.run([passwd_tool, "-b", "-c", str(passwd), USER, PASSWORD], check=True,
                   capture_output=True)
    pki = make_pki(directory / "pki")
    port, tls_port = free_port(), free_port()
    conf = directory / "mosquitto.conf"
    # user root: run as root (in CI) mosquitto would drop to 'mosquitto', which cannot
    # read the test's private temporary directory.
    conf.write_text(
        "user root\nper_listener_settings false\nallow_anonymous false\n"
        f"password_file {passwd}\npersistence false\n"
        f"listener {port} 127.0.0.1\n"
        f"listener {tls_port} 127.0.0.1\n"
        f"cafile {pki['ca']}\ncertfile {pki['server']}\nkeyfile {pki['server_key']}\n")
    log = directory / "mosquitto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=out, stderr=out)
    try:
        wait_for_port(port)
        wait_for_port(tls_port)
        yield SecureBroker(port, tls_port, pki)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
