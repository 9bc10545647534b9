"""What the driver API accepts: bounded integers, no control characters in any string, and a limit on the
live streams one driver holds open."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from domain.ledger import Ledger
from tests.integration.driver_app import (  # noqa: F401  (fixtures)
    PILE,
    auth_settings,
    client,
    connect,
    login,
    payment_keys,
    start,
    top_up,
    world,
)
from tests.payment_fakes import PayWorld


@pytest.mark.parametrize(("path", "params", "field"), [
    ("/driver/sessions", {"before": str(2**63)}, "query.before"),
    ("/driver/sessions", {"before": str(-1)}, "query.before"),
    ("/driver/wallet/postings", {"before": str(2**63)}, "query.before"),
    ("/driver/guns", {"qr": f"https://charge.example.com/c/{PILE}01\x00"}, "query.qr"),
    ("/driver/guns", {"qr": f"https://charge.example.com/c/{PILE}01\u202e"}, "query.qr"),
    (f"/driver/sessions/{PILE}01{quote(chr(0))}", None, "path.trade_no"),
    (f"/driver/sessions/{PILE}01{quote(chr(0))}/stream", None, "path.trade_no"),
    (f"/driver/wallet/top-ups/T2026{quote(chr(0))}", None, "path.out_trade_no"),
])
def test_out_of_range_numbers_and_control_characters_are_422(client: TestClient, world: PayWorld, path: str,
                                                              params: dict[str, str] | None, field: str) -> None:
    auth = login(client, world)
    r = client.get(path, params=params, headers=auth)
    assert r.status_code == 422, r.text
    assert field in [d["field"] for d in r.json()["details"]], r.text


def test_control_characters_in_login_codes_and_channel_names_are_422(client: TestClient, world: PayWorld) -> None:
    r = client.post(f"/driver/login/wechat/{world.tenant_id}/wx-main", json={"code": "abc\x00def"})
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "body.code", r.text
    r = client.post(f"/driver/login/wechat/{world.tenant_id}/wx{quote(chr(0))}", json={"code": "abc"})
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "path.app", r.text


def read_to_end(client: TestClient, auth: dict[str, str], trade_no: str, out: list[int]) -> None:
    r = client.get(f"/driver/sessions/{trade_no}/stream", headers=auth)
    out.append(r.status_code)


def wait_for(condition: Any, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_a_driver_holds_at_most_three_live_streams(client: TestClient, world: PayWorld, ledger: Ledger) -> None:
    connect(ledger, PILE)
    auth = login(client, world)
    top_up(client, world, auth, 50_00)
    r = start(client, auth, "stream-limit-0001")
    assert r.status_code == 202, r.text
    trade_no = r.json()["trade_no"]
    slots = client.app.state.driver_sessions.streams  # type: ignore[attr-defined]
    driver = client.app.state.driver_identity.tokens.verify(auth["Authorization"].split()[1])  # type: ignore[attr-defined]
    done: list[int] = []
    readers = [threading.Thread(target=read_to_end, args=(client, auth, trade_no, done)) for _ in range(3)]
    for reader in readers:
        reader.start()
    wait_for(lambda: slots.count(driver) == 3)
    r = client.get(f"/driver/sessions/{trade_no}/stream", headers=auth)
    assert (r.status_code, r.json()["code"]) == (429, "too_many_streams"), r.text
    other = login(client, world)  # another driver is not held back (their stream of this session is a 404)
    assert client.get(f"/driver/sessions/{trade_no}/stream", headers=other).status_code == 404
    ledger.force_close(trade_no, at=datetime.now(UTC), reason="test over", author="ops")
    for reader in readers:
        reader.join(timeout=60)
        assert not reader.is_alive()
    assert done == [200, 200, 200] and slots.count(driver) == 0  # every slot came back when its stream ended
    assert client.get(f"/driver/sessions/{trade_no}/stream", headers=auth).status_code == 200
