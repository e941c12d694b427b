"""`edge up` as users run it: readiness, bind failures with remedies, SIGTERM with connections open."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

EDGE = [sys.executable, "-m", "edge"]


def get_json(url: str, timeout: float = 2.0) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def wait_ready(proc: subprocess.Popen[str], url: str, deadline: float = 30.0) -> dict[str, object]:
    """Poll /ready until 200 (bounded); fail early if the process died."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"edge exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            status, body = get_json(url, timeout=1.0)
        except OSError:
            time.sleep(0.05)  # polling a readiness endpoint that is not listening yet
            continue
        if status == 200:
            return body
        time.sleep(0.05)
    raise AssertionError("edge did not become ready")


@pytest.fixture
def edge_proc(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [*EDGE, "up", "--state-dir", str(tmp_path / "state"), "--log-format", "json", "--port-offset", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()


def test_up_on_the_default_config_is_ready_and_truthful(edge_proc: subprocess.Popen[str]) -> None:
    body = wait_ready(edge_proc, "http://127.0.0.1:8900/ready")
    assert body["ready"] is True
    binds = body["binds"]
    assert isinstance(binds, list) and binds
    assert all(b["status"] == "bound" for b in binds)
    bound = {(b["transport"], b["address"], b["port"]) for b in binds}
    assert ("tcp", "127.0.30.1", 80) in bound and ("udp", "127.0.30.3", 53) in bound
    status, health = get_json("http://127.0.0.1:8900/health")
    assert status == 200 and health["status"] == "ok"
    with urllib.request.urlopen("http://127.0.0.1:8900/ca.pem") as resp:
        assert resp.read().startswith(b"-----BEGIN CERTIFICATE-----")
    # The demo HTTP echo answers with what it received.
    with urllib.request.urlopen("http://127.0.30.1/hello?x=1") as resp:
        echo = json.loads(resp.read())
    assert echo["target"] == "/hello?x=1" and echo["origin"] == "http-echo"


def test_sigterm_with_open_connections_exits_zero_within_the_deadline(edge_proc: subprocess.Popen[str]) -> None:
    wait_ready(edge_proc, "http://127.0.0.1:8900/ready")
    idle = socket.create_connection(("127.0.30.2", 22))
    idle.recv(4096)
    t0 = time.monotonic()
    edge_proc.send_signal(signal.SIGTERM)
    assert edge_proc.wait(timeout=20) == 0
    assert time.monotonic() - t0 < 12  # the default shutdown deadline is 10 s
    idle.close()


def test_bind_failure_names_the_address_and_the_remedy(tmp_path: Path) -> None:
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.30.2", 22))
    blocker.listen()
    try:
        proc = subprocess.run(
            [
                *EDGE,
                "up",
                "--state-dir",
                str(tmp_path),
                "--port-offset",
                "0",
                "--roles",
                "origins",
                "--log-format",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        blocker.close()
    assert proc.returncode == 1
    assert "127.0.30.2:22 is already in use" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_address_not_on_this_machine_gets_the_command_that_adds_it() -> None:
    from edge.runtime import bind_remedy, listen_socket

    try:
        listen_socket("192.0.2.10", 0)  # TEST-NET-1: never configured here
    except OSError as e:
        remedy = bind_remedy(e, "192.0.2.10", 443, 0)
    else:
        raise AssertionError("192.0.2.10 could be bound")
    assert "192.0.2.10 is not available on this machine" in remedy
    assert "`sudo ip addr add 192.0.2.10/32 dev lo`" in remedy or "`sudo ifconfig lo0 alias 192.0.2.10 up`" in remedy


def test_check_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("network: {colo: lhr}\nzones:\n  - name: example.com\n    settings: {ssl: medium}\n")
    proc = subprocess.run([*EDGE, "check", str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "network.colo" in proc.stderr and "zones[0].settings.ssl" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_summarises_a_good_file(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text((Path(__file__).resolve().parents[2] / "edge" / "default.yaml").read_text())
    proc = subprocess.run([*EDGE, "check", str(good)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "spectrum.example.com tcp/443" in proc.stdout
    assert len(proc.stdout.splitlines()) < 40


def test_without_privileged_ports_the_offset_applies_everywhere(tmp_path: Path) -> None:
    """A process that may not bind ports < 1024 (here: root without CAP_NET_BIND_SERVICE, as for
    a normal user) runs the default config with port offset 10000 on every listener."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to drop the capability")
    proc = subprocess.Popen(
        ["setpriv", "--bounding-set=-net_bind_service", "--", *EDGE, "up", "--state-dir", str(tmp_path),
         "--roles", "origins,api", "--log-format", "json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        body = wait_ready(proc, "http://127.0.0.1:18900/ready")
        assert body["port_offset"] == 10000
        ports = {(b["address"], b["port"]) for b in body["binds"]}  # type: ignore[union-attr]
        assert ("127.0.30.1", 10080) in ports and ("127.0.30.2", 10022) in ports and ("127.0.0.1", 18900) in ports
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        assert proc.stderr is not None
        err = proc.stderr.read()
        proc.stderr.close()
    assert "port offset 10000 applies to every listener" in err
    assert "dig @127.0.0.2 -p 10053" in err


def generation(port: int = 8900) -> int:
    status, body = get_json(f"http://127.0.0.1:{port}/ready")
    assert status == 200
    return int(body["generation"])  # type: ignore[call-overload]


def wait_for(predicate: object, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)  # polling an observable state of another process
    raise AssertionError("condition not met in time")


def test_sighup_and_file_edits_reload_and_a_bad_reload_keeps_the_live_config(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    config = tmp_path / "edge.yaml"
    text = (root / "edge" / "default.yaml").read_text()
    config.write_text(text)
    log = tmp_path / "log.jsonl"
    with open(log, "w") as out:
        proc = subprocess.Popen([*EDGE, "up", "--config", str(config), "--state-dir", str(tmp_path / "s"),
                                 "--roles", "api", "--port-offset", "0", "--log-format", "json"],
                                stdout=out, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(proc, "http://127.0.0.1:8900/ready")
        first = generation()
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: generation() == first + 1)
        config.write_text(text.replace("colo: LHR", "colo: SJC"))  # an edit alone triggers a reload
        wait_for(lambda: generation() == first + 2)
        assert "edge.config.restart_needed" not in log.read_text()  # the colo is read live
        # A listener address changes only at the next start: applied, and said so.
        config.write_text(text.replace("cdn_ips: [127.0.10.1, 127.0.10.2]", "cdn_ips: [127.0.10.1, 127.0.10.3]"))
        wait_for(lambda: "edge.config.restart_needed" in log.read_text())
        assert generation() == first + 3
        warned = [json.loads(line) for line in log.read_text().splitlines() if "edge.config.restart_needed" in line]
        assert warned[0]["changed"] == ["network.cdn_ips"]
        config.write_text(text.replace("ssl: full", "ssl: medium"))
        wait_for(lambda: "edge.config.reload_rejected" in log.read_text())
        assert generation() == first + 3
        rejected = [json.loads(line) for line in log.read_text().splitlines()
                    if "edge.config.reload_rejected" in line]
        assert any("zones[0].settings.ssl" in p for p in rejected[0]["problems"])
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        if proc.stderr:
            proc.stderr.close()


def test_edge_ca_prints_path_and_pem_and_certs_origin_issues(tmp_path: Path) -> None:
    ca = subprocess.run([*EDGE, "ca", "--state-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert ca.returncode == 0, ca.stderr
    path, _, pem = ca.stdout.partition("\n")
    assert Path(path) == tmp_path / "ca" / "ca.pem" and pem.startswith("-----BEGIN CERTIFICATE-----")
    again = subprocess.run([*EDGE, "ca", "--state-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert again.stdout == ca.stdout  # created once, reused after
    out = subprocess.run([*EDGE, "certs", "origin", "origin.example.net", "--state-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    cert = Path(out.stdout.split()[1])
    verify = subprocess.run(["openssl", "verify", "-CAfile", path, str(cert)], capture_output=True, text=True)
    assert verify.returncode == 0 and ": OK" in verify.stdout
    bad = subprocess.run([*EDGE, "certs", "origin", "bad..name", "--state-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr


def test_edge_version() -> None:
    out = subprocess.run([*EDGE, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("edge 0."), out
