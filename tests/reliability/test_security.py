"""Security (issue 9, part 6): API auth, loopback binding, file modes, and requests that try to
make the CDN connect to the emulator's own internal addresses."""

from __future__ import annotations

import ipaddress
import stat
from collections.abc import Iterator
from typing import Any

import pytest
from reliability_harness import api_call, base_config, edge_running, handle_of, pick_block, zone_id

from edge.config import default_config
from edge.pytest_plugin import EdgeFixture


@pytest.fixture(scope="module")
def sec_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeFixture]:
    block = pick_block()
    data = base_config(block)
    zone: dict[str, Any] = data["zones"][0]
    zone["dns_records"] += [
        {"name": "to-cdn.example.com", "type": "A", "content": f"127.{block}.10.2", "proxied": True, "ttl": 1},
        {"name": "to-api.example.com", "type": "A", "content": f"127.{block}.0.1", "proxied": True, "ttl": 1},
        {"name": "to-resolver.example.com", "type": "A", "content": f"127.{block}.0.2", "proxied": True, "ttl": 1},
        {"name": "to-localhost.example.com", "type": "A", "content": "127.0.0.1", "proxied": True, "ttl": 1},
    ]
    with edge_running(data, tmp_path_factory.mktemp("sec"), block) as edge:
        yield edge


@pytest.mark.parametrize("token", [None, "wrong-token", ""])
def test_api_refuses_without_valid_token(sec_edge: EdgeFixture, token: str | None) -> None:
    status, body = api_call(sec_edge, "GET", "/zones", token=token)
    assert status == 403, (status, body)
    assert isinstance(body, dict) and body["success"] is False
    assert [e["code"] for e in body["errors"]] == [10000], body


def test_api_email_and_key_auth(sec_edge: EdgeFixture) -> None:
    import urllib.error
    import urllib.request

    api = sec_edge.snapshot.config.api

    def get(email: str, key: str) -> int:
        req = urllib.request.Request(sec_edge.api_base + "/zones", headers={"X-Auth-Email": email, "X-Auth-Key": key})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as e:
            e.close()
            return int(e.code)

    assert get(api.email, api.key) == 200
    assert get(api.email.upper(), api.key) == 200  # the email is case-insensitive
    assert get(api.email, "wrong") == 403
    assert get(api.email, "") == 403
    assert get("other@example.com", api.key) == 403


def test_api_write_without_token_changes_nothing(sec_edge: EdgeFixture) -> None:
    zid = zone_id(sec_edge)
    before = int(sec_edge.snapshot.generation)
    status, _ = api_call(
        sec_edge, "POST", f"/zones/{zid}/dns_records", {"name": "evil", "type": "A", "content": "192.0.2.1"}, token=None
    )
    assert status == 403
    assert int(sec_edge.snapshot.generation) == before


def test_admin_binds_loopback_by_default(sec_edge: EdgeFixture) -> None:
    assert default_config().api.address.is_loopback
    binds = [b for b in handle_of(sec_edge).ctx.binds.all() if b.role == "api"]
    assert binds and all(ipaddress.ip_address(b.address).is_loopback for b in binds), binds


def test_private_keys_are_0600(sec_edge: EdgeFixture) -> None:
    state = handle_of(sec_edge).state_dir
    # Issue a zone certificate (a TLS request) so certs/ has keys too.
    assert sec_edge.request("GET", "www.example.com", "/bytes/1")[0] == 200
    keys = [state / "ca" / "ca.key", *sorted((state / "certs").glob("*.key"))]
    assert len(keys) >= 2, keys
    for key in keys:
        mode = stat.S_IMODE(key.stat().st_mode)
        assert mode == 0o600, (key, oct(mode))
    assert stat.S_IMODE(state.stat().st_mode) & 0o077 == 0, oct(state.stat().st_mode)


@pytest.mark.parametrize("host", ["127.0.0.1:8900", "127.0.0.1", "[::1]", "10.0.0.1", "0x7f000001"])
def test_ip_literal_host_gets_1003(sec_edge: EdgeFixture, host: str) -> None:
    status, headers, body = sec_edge.request("GET", host, "/", scheme="http")
    if host == "0x7f000001":
        # Not an IP literal in HTTP terms: a name no zone owns.
        assert status in {403, 409}, (status, body[:200])
        return
    assert status == 403, (status, body[:200])
    assert "1003" in headers.get("cf-error-code", "") + body.decode(errors="replace")


def test_record_pointing_at_cdn_ip_gets_1000(sec_edge: EdgeFixture) -> None:
    status, headers, body = sec_edge.request("GET", "to-cdn.example.com", "/")
    assert status == 403, (status, body[:200])
    assert "1000" in headers.get("cf-error-code", "") + body.decode(errors="replace")




@pytest.mark.parametrize("host", ["to-api.example.com", "to-resolver.example.com", "to-localhost.example.com"])
def test_record_pointing_at_internal_address_gets_1002(sec_edge: EdgeFixture, host: str) -> None:
    status, headers, body = sec_edge.request("GET", host, "/", scheme="http")
    assert status == 403 and "1002" in headers.get("cf-error-code", "") + body.decode(errors="replace"), (
        status,
        body[:200],
    )


def test_internal_record_never_reaches_admin_api(sec_edge: EdgeFixture) -> None:
    """Whatever the code, the admin API's content must never come back through the CDN (its
    port 8900 is not a CDN port, so the dial goes to :80/:443 of the admin address)."""
    for scheme in ("http", "https"):
        status, _headers, body = sec_edge.request("GET", "to-api.example.com", "/health", scheme=scheme)
        assert b'"generation"' not in body and b"uptime_s" not in body, (scheme, status, body[:200])
        assert status >= 400, (scheme, status)
