"""The audit log's witness, end to end: a real rsyslogd (Debian's package) started by the test
on 127.0.0.1 and a socket of its own, never the machine's /dev/log; heads reach its file, and
`audit verify --syslog FILE` catches a restored copy of audit/ that nothing in HOME can."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import run_cli

RSYSLOGD = "/usr/sbin/rsyslogd"


@dataclass(frozen=True)
class Syslog:
    udp: int
    tcp: int
    socket: Path
    file: Path

    def lines(self) -> list[str]:
        return self.file.read_text().splitlines() if self.file.exists() else []

    def wait_for(self, text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines()):
            assert time.monotonic() < deadline, f"{text!r} never reached {self.file}"
            time.sleep(0.05)


def free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Syslog]:
    """An rsyslogd of this test's own: its config, pid file, work folder and output file,
    listening on UDP and TCP at 127.0.0.1 and on a Unix socket in tmp_path."""
    if not Path(RSYSLOGD).exists():
        pytest.skip("rsyslogd is not installed (./install.sh --dev installs Debian's rsyslog)")
    folder = tmp_path / "rsyslog"
    folder.mkdir()
    syslog = Syslog(
        free_port(socket.SOCK_DGRAM),
        free_port(socket.SOCK_STREAM),
        folder / "log.sock",
        folder / "syslog.log",
    )
    config = folder / "rsyslog.conf"
    config.write_text(
        f'global(workDirectory="{folder}")\n'
        'module(load="imudp")\n'
        'module(load="imtcp")\n'
        'module(load="imuxsock" SysSock.Use="off")\n'  # never /dev/log
        f'input(type="imudp" address="127.0.0.1" port="{syslog.udp}")\n'
        f'input(type="imtcp" address="127.0.0.1" port="{syslog.tcp}")\n'
        f'input(type="imuxsock" Socket="{syslog.socket}")\n'
        f'*.* action(type="omfile" file="{syslog.file}")\n'
    )
    output = folder / "rsyslogd.out"
    with output.open("w") as handle:
        daemon = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(config), "-i", str(folder / "rsyslogd.pid")],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        if not _ready(daemon, syslog):
            pytest.skip(f"rsyslogd could not start here: {output.read_text()[-1000:]}")
        yield syslog
    finally:
        daemon.terminate()
        daemon.wait(10)


def _ready(daemon: subprocess.Popen[bytes], syslog: Syslog) -> bool:
    """All three inputs take messages (a UDP datagram sent too early is lost silently)."""
    deadline = time.monotonic() + 15
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        while time.monotonic() < deadline and daemon.poll() is None:
            udp.sendto(b"<14>probe: ready?", ("127.0.0.1", syslog.udp))
            if syslog.socket.exists() and any("probe" in line for line in syslog.lines()):
                try:
                    socket.create_connection(("127.0.0.1", syslog.tcp), timeout=1).close()
                except OSError:
                    pass
                else:
                    return True
            time.sleep(0.1)
    return False


WITNESSES = {
    "udp": lambda s: {"address": f"127.0.0.1:{s.udp}", "protocol": "udp"},
    "tcp": lambda s: {"address": f"127.0.0.1:{s.tcp}", "protocol": "tcp"},
    "local socket": lambda s: {"address": str(s.socket)},
}


def witnessed_by(home: Path, syslog: Syslog, how: str) -> None:
    settings = {"audit": {"witness": "syslog", "syslog": WITNESSES[how](syslog)}}
    (home / "settings.yaml").write_text(json.dumps(settings))


def log_lines(home: Path) -> list[str]:
    return (home / "audit" / "audit.jsonl").read_text().splitlines()


def heads_in(syslog: Syslog) -> list[dict]:
    return [
        json.loads(line[line.index("{") :])
        for line in syslog.lines()
        if " dossierhub-audit: " in line
    ]


@pytest.mark.parametrize("how", list(WITNESSES))
def test_every_head_reaches_syslog_and_a_restored_copy_is_caught(
    home: Path, rsyslog: Syslog, how: str
) -> None:
    witnessed_by(home, rsyslog, how)
    for _ in range(3):
        assert run_cli(home, "init").exit_code == 0
    count = len(log_lines(home))
    rsyslog.wait_for(f'"seq": {count}')
    installation = json.loads(log_lines(home)[0])["details"]["installation"]
    heads = heads_in(rsyslog)
    assert [h["seq"] for h in heads] == [count - 2, count - 1, count]
    for head in heads:  # each names this installation and the very record it follows
        assert head["installation"] == installation and head["action"] == "init"
        line = log_lines(home)[head["seq"] - 1]
        assert head["hash"] == hashlib.sha256(line.encode()).hexdigest()
    result = run_cli(home, "audit", "verify", "--syslog", str(rsyslog.file))
    assert result.exit_code == 0, result.stderr
    assert f"syslog {rsyslog.file}: 3 head(s) of installation {installation}" in result.stdout
    assert f"the latest record {count}, each in the log" in result.stdout

    # the attacker keeps a copy of audit/, lets the log go on, then puts the copy back
    copy = home.parent / "copy"
    shutil.copytree(home / "audit", copy)
    for _ in range(2):
        assert run_cli(home, "init").exit_code == 0
    rsyslog.wait_for(f'"seq": {count + 2}')
    shutil.rmtree(home / "audit")
    shutil.copytree(copy, home / "audit")

    # nothing in HOME disagrees (no release was made meanwhile): only the witness can tell
    assert run_cli(home, "audit", "verify").exit_code == 0
    result = run_cli(home, "audit", "verify", "--syslog", str(rsyslog.file))
    assert result.exit_code == 1
    assert f"audit log broken at record {count + 1}: syslog {rsyslog.file} (line " in result.stderr
    assert (
        f"witnessed record {count + 2} (init), but the log ends at record {count}: records "
        f"{count + 1} to {count + 2} were removed (the log was rolled back or cut)" in result.stderr
    ), result.stderr


def test_a_log_replaced_by_an_older_copy_that_went_on_is_caught(
    home: Path, rsyslog: Syslog
) -> None:
    """Put back an older copy and append until it is as long as the real log: the sequence
    numbers agree with syslog's, the hashes do not."""
    witnessed_by(home, rsyslog, "udp")
    copy = home.parent / "copy"
    shutil.copytree(home / "audit", copy)
    count = len(log_lines(home))
    assert run_cli(home, "init").exit_code == 0
    rsyslog.wait_for(f'"seq": {count + 1}')
    shutil.rmtree(home / "audit")
    shutil.copytree(copy, home / "audit")
    assert (
        run_cli(home, "passwd", "x.someone", "--password-stdin", input="long enough\n").exit_code
        == 0
    )
    rsyslog.wait_for('"action": "passwd"')
    result = run_cli(home, "audit", "verify", "--syslog", str(rsyslog.file))
    assert result.exit_code == 1
    assert f"audit log broken at record {count + 1}: record {count + 1} is not the one syslog" in (
        result.stderr
    )
    assert "the log was replaced from record" in result.stderr


def test_heads_forged_into_syslog_are_ignored(home: Path, rsyslog: Syslog) -> None:
    """Anyone on the machine can write to syslog: a line naming this installation with a
    head the log never had neither breaks verify nor counts as a witness."""
    witnessed_by(home, rsyslog, "tcp")
    assert run_cli(home, "init").exit_code == 0
    count = len(log_lines(home))
    rsyslog.wait_for(f'"seq": {count}')
    installation = json.loads(log_lines(home)[0])["details"]["installation"]
    forged = {"installation": installation, "seq": count + 50, "hash": "0" * 64, "mac": "1" * 64}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        message = f"<38>dossierhub-audit: {json.dumps(forged)}"
        udp.sendto(message.encode(), ("127.0.0.1", rsyslog.udp))
    rsyslog.wait_for(f'"seq": {count + 50}')
    result = run_cli(home, "audit", "verify", "--syslog", str(rsyslog.file))
    assert result.exit_code == 0, result.stderr
    assert f"1 line(s) name installation {installation} with a MAC that does not match" in (
        result.stdout
    )
    assert f"the latest record {count}, each in the log" in result.stdout


def test_a_syslog_file_without_this_installation_is_no_proof(home: Path, rsyslog: Syslog) -> None:
    (home / "settings.yaml").write_text(json.dumps({"audit": {"witness": "none"}}))
    assert run_cli(home, "init").exit_code == 0
    result = run_cli(home, "audit", "verify", "--syslog", str(rsyslog.file))
    assert result.exit_code == 1
    assert f"syslog {rsyslog.file} holds no head of installation" in result.stderr
