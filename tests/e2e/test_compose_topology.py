"""The docker compose recipe, checked without Docker (no engine runs on CI machines).

1. `docker-compose config` validates the file.
2. Its topology runs in Linux network namespaces: one namespace per service on a bridge (the
   bridge lives in a hub namespace of its own), each with the service's fixed address, the
   image's entrypoint (which adds the plan's extra addresses) and the service's command started
   inside; the client's checks run from the client's namespace, with its DNS set as compose
   sets it (`ip netns exec` mounts /etc/netns/<ns>/resolv.conf). Traffic stays in namespaces
   this test creates.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.e2e


def test_compose_file_is_valid() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.fail("docker-compose is not installed (make test installs it)")
    for args in ([], ["--profile", "split"]):
        proc = subprocess.run([tool, "-f", str(COMPOSE), *args, "config", "-q"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def sh(*args: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


class Topology:
    """Namespaces for compose services on one bridge."""

    def __init__(self, tag: str, state: Path) -> None:
        self.tag = tag
        self.state = state
        self.hub = f"{tag}-hub"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[str]] = []
        self.resolv_dirs: list[Path] = []
        compose = yaml.safe_load(COMPOSE.read_text())
        self.services: dict[str, Any] = compose["services"]
        net = compose["networks"]["edgenet"]["ipam"]["config"][0]
        self.prefix = int(net["subnet"].split("/")[1])
        sh("ip", "netns", "add", self.hub)
        self.namespaces.append(self.hub)
        sh("ip", "netns", "exec", self.hub, "ip", "link", "add", "br0", "type", "bridge")
        sh("ip", "netns", "exec", self.hub, "ip", "link", "set", "br0", "up")

    def ns(self, service: str) -> str:
        return f"{self.tag}-{service}"

    def add(self, service: str) -> None:
        spec = self.services[service]
        ns = self.ns(service)
        address = spec["networks"]["edgenet"]["ipv4_address"]
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        short = uuid.uuid4().hex[:8]
        inner, outer = f"vi{short}", f"vo{short}"
        sh("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
        sh("ip", "link", "set", inner, "netns", ns)
        sh("ip", "link", "set", outer, "netns", self.hub)
        sh("ip", "netns", "exec", self.hub, "ip", "link", "set", outer, "master", "br0", "up")
        run = ["ip", "netns", "exec", ns]
        sh(*run, "ip", "link", "set", inner, "name", "eth0")
        sh(*run, "ip", "addr", "add", f"{address}/{self.prefix}", "dev", "eth0")
        sh(*run, "ip", "link", "set", "eth0", "up")
        sh(*run, "ip", "link", "set", "lo", "up")
        sh(*run, "ip", "route", "add", "default", "dev", "eth0")
        dns = spec.get("dns")
        if dns:
            d = Path("/etc/netns") / ns
            d.mkdir(parents=True, exist_ok=True)
            (d / "resolv.conf").write_text("".join(f"nameserver {s}\n" for s in dns))
            self.resolv_dirs.append(d)

    def start(self, service: str) -> None:
        spec = self.services[service]
        env = {**os.environ, **{k: str(v) for k, v in (spec.get("environment") or {}).items()}}
        env["PATH"] = f"{BIN}:{env['PATH']}"
        command = [str(a) for a in spec["command"]]
        command = [
            str(ROOT / "docker" / "edge.yaml") if a == "/etc/edge/edge.yaml" else str(self.state) if a == "/state" else a
            for a in command
        ]
        with open(self.state.parent / f"{service}.log", "w") as log:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns(service), "sh", str(ROOT / "docker" / "entrypoint.sh"), *command],
                stdout=log, stderr=subprocess.STDOUT, text=True, env=env,
            )
        self.procs.append(proc)

    def client(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **{k: str(v).replace("/state", str(self.state))
                                for k, v in (self.services["client"].get("environment") or {}).items()}}
        return subprocess.run(["ip", "netns", "exec", self.ns("client"), *args],
                              capture_output=True, text=True, timeout=timeout, env=env)

    def wait_healthy(self, service: str, deadline: float = 60.0) -> None:
        test = self.services[service]["healthcheck"]["test"][1:]
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            for p in self.procs:
                if p.poll() is not None:
                    raise AssertionError(f"a service exited with {p.returncode}: {self.logs()}")
            if self.client(*test, timeout=5).returncode == 0:
                return
            time.sleep(0.2)  # polling the compose healthcheck, as Docker does
        raise AssertionError(f"{service} not healthy: {self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.state.parent.glob("*.log"))

    def close(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "delete", ns, check=False)
        for d in self.resolv_dirs:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("the namespace topology test needs root and iproute2 (make test / .ci/run provide both)")
    state = tmp_path / "state"
    state.mkdir()
    topo = Topology(f"e{uuid.uuid4().hex[:6]}", state)
    try:
        yield topo
    finally:
        topo.close()


def test_single_service_topology_serves_the_seed(topology: Topology) -> None:
    for service in ("edge", "client"):
        topology.add(service)
    topology.start("edge")
    topology.wait_healthy("edge")
    ca = str(topology.state / "ca" / "ca.pem")
    dig = topology.client("dig", "+short", "www.example.com")
    assert dig.stdout.split() and all(a.startswith("10.89.10.") for a in dig.stdout.split()), dig
    www = topology.client("curl", "-sS", "--cacert", ca, "https://www.example.com/")
    assert www.returncode == 0, www.stderr + topology.logs()
    assert '"origin": "http-echo"' in www.stdout or '"origin": "https-echo"' in www.stdout
    spectrum = topology.client("dig", "+short", "spectrum.example.com")
    assert spectrum.stdout.strip().startswith("10.89.20."), spectrum
    seed = topology.client("curl", "-sS", "--cacert", ca, "--resolve", "spectrum.example.com:443:10.89.10.1",
                           "https://spectrum.example.com/")
    assert seed.returncode == 0, seed.stderr + topology.logs()
    assert "10.89.20.254" in seed.stdout  # the echo saw Spectrum's egress as its peer


def test_split_roles_share_the_store_through_the_volume(topology: Topology) -> None:
    for service in ("resolver", "api", "cdn", "spectrum", "origins", "client"):
        topology.add(service)
    for service in ("api", "resolver", "origins", "spectrum", "cdn"):
        topology.start(service)
    topology.wait_healthy("api")
    # A record created through the API process is answered by the resolver process.
    token = yaml.safe_load((ROOT / "docker" / "edge.yaml").read_text())["api"]["token"]
    zones = topology.client("curl", "-sS", "-H", f"Authorization: Bearer {token}",
                            "http://10.89.0.1:8900/client/v4/zones?name=example.com")
    assert zones.returncode == 0, zones.stderr
    import json

    zone_id = json.loads(zones.stdout)["result"][0]["id"]
    made = topology.client("curl", "-sS", "-X", "POST", "-H", f"Authorization: Bearer {token}",
                           "-H", "Content-Type: application/json",
                           "--data", '{"name": "split.example.com", "type": "A", "content": "192.0.2.77", "ttl": 300}',
                           f"http://10.89.0.1:8900/client/v4/zones/{zone_id}/dns_records")
    assert json.loads(made.stdout)["success"] is True, made.stdout
    end = time.monotonic() + 30
    answer = ""
    while time.monotonic() < end:
        answer = topology.client("dig", "+short", "split.example.com").stdout.strip()
        if answer == "192.0.2.77":
            break
        time.sleep(0.1)  # the resolver process is still starting or following the store
    assert answer == "192.0.2.77", topology.logs()
    # The seed through the cdn process: the api process's analytics and traces see it.
    ca = str(topology.state / "ca" / "ca.pem")
    seed = topology.client("curl", "-sS", "-D", "-", "--cacert", ca, "--resolve",
                           "spectrum.example.com:443:10.89.10.1", "https://spectrum.example.com/")
    assert seed.returncode == 0 and "10.89.20.254" in seed.stdout, seed.stderr + topology.logs()
    ray = next(line.split(":", 1)[1].strip() for line in seed.stdout.splitlines()
               if line.lower().startswith("cf-ray:")).split("-")[0]
    end = time.monotonic() + 10
    trace: dict[str, object] = {}
    while time.monotonic() < end:
        got = topology.client("curl", "-sS", f"http://10.89.0.1:8900/trace/{ray}")
        if got.returncode == 0 and got.stdout.startswith("{") and '"steps"' in got.stdout:
            trace = json.loads(got.stdout)
            break
        time.sleep(0.1)  # the cdn process forwards its records once per loop tick
    assert trace, topology.logs()
    stages = [step["stage"] for step in trace["steps"]]  # type: ignore[attr-defined]
    assert "spectrum" in stages and "dns" in stages, stages
