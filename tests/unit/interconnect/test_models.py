"""Business objects: both spellings in, the peer's spelling out, exact decimals, ids as text, unknown
fields ignored, and a property: any object survives JSON, encryption and back in every dialect."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.interconnect.tcec import wire
from adapters.interconnect.tcec.codec import KeySet
from adapters.interconnect.tcec.dialect import Dialect
from adapters.interconnect.tcec.interfaces import INTERFACES
from adapters.interconnect.tcec.models.base import DataError, Model
from adapters.interconnect.tcec.models.charge import ChargeStatus
from adapters.interconnect.tcec.models.orders import ChargeOrderInfo
from adapters.interconnect.tcec.models.policy import BusinessPolicyResponse, PolicyInfo
from adapters.interconnect.tcec.models.status import StationStatusRequest
from adapters.interconnect.tcec.models.token import TokenRequest
from tests.unit.interconnect.strategies import business_objects

KEYS = KeySet("1234567890abcdef", "abcdef1234567890", "sig-secret-0001")
SEQ = "MA1G55M8X000000000000000001"
DETAIL = {"DetailStartTime": "2026-01-01 12:00:00", "DetailEndTime": "2026-01-01 12:30:00", "ElecPrice": "0.8000",
          "SevicePrice": "0.4000", "DetailPower": "10.00", "DetailElecMoney": "8.00", "DetailSeviceMoney": "4.00"}
ORDER = {"StartChargeSeq": SEQ, "ConnectorID": "0012", "StartTime": "2026-01-01 12:00:00",
         "EndTime": "2026-01-01 12:30:00", "TotalPower": "10.00", "TotalElecMoney": "8.00",
         "TotalSeviceMoney": "4.00", "TotalMoney": "12.00", "StopReason": 0, "SumPeriod": 1,
         "ChargeDetails": [DETAIL]}


def from_json(model: type[Model], text: str) -> Any:
    return model.from_wire(wire.loads(text.encode("utf-8")))


def test_both_spellings_of_service_fields_are_accepted_and_mean_the_same() -> None:
    standard = wire.dumps(ORDER)
    xiaoju = standard.replace("Sevice", "Service")
    assert "Service" in xiaoju and "Sevice" not in xiaoju
    assert from_json(ChargeOrderInfo, standard) == from_json(ChargeOrderInfo, xiaoju)
    assert from_json(ChargeOrderInfo, xiaoju).TotalSeviceMoney == Decimal("4.00")


def test_elect_money_and_equipment_mode_are_accepted() -> None:
    snapshot = {"StartChargeSeq": SEQ, "StartChargeSeqStat": 2, "ConnectorID": "1", "ConnectorStatus": 3,
                "CurrentA": 10, "VoltageA": 380, "StartTime": "2026-01-01 12:00:00", "EndTime": "2026-01-01 12:10:00",
                "TotalPower": "1.50", "ElectMoney": "1.20", "TotalMoney": "1.80"}
    assert ChargeStatus.from_wire(snapshot).ElecMoney == Decimal("1.20")


def test_one_field_in_both_spellings_with_different_values_is_refused() -> None:
    with pytest.raises(DataError, match="TotalSeviceMoney is sent twice"):
        ChargeOrderInfo.from_wire({**ORDER, "TotalServiceMoney": "5.00"})
    assert ChargeOrderInfo.from_wire({**ORDER, "TotalServiceMoney": "4.00"}).TotalSeviceMoney == Decimal("4")


@pytest.mark.parametrize("dialect, interface, present, absent", [
    (Dialect.TCEC2016, "query_equip_charge_status", ["SeviceMoney", "ElecMoney", "DetailSeviceMoney"],
     ["Service", "ElectMoney"]),
    (Dialect.SERVICE, "query_equip_charge_status", ["ServiceMoney", "ElecMoney", "DetailServiceMoney"],
     ["Sevice", "ElectMoney"]),
    (Dialect.XIAOJU, "query_equip_charge_status", ["ServiceMoney", "ElectMoney"], ["Sevice", '"ElecMoney"']),
    (Dialect.XIAOJU, "notification_equip_charge_status", ["ServiceMoney", '"ElecMoney"'], ["Sevice", "ElectMoney"]),
])
def test_we_send_the_spelling_of_the_peers_dialect(dialect: Dialect, interface: str, present: list[str],
                                                  absent: list[str]) -> None:
    snapshot = ChargeStatus.from_wire({
        "StartChargeSeq": SEQ, "StartChargeSeqStat": 2, "ConnectorID": "1", "ConnectorStatus": 3, "CurrentA": 10,
        "VoltageA": 380, "StartTime": "2026-01-01 12:00:00", "EndTime": "2026-01-01 12:30:00", "TotalPower": "10.00",
        "ElecMoney": "8.00", "SeviceMoney": "4.00", "TotalMoney": "12.00", "SumPeriod": 1, "ChargeDetails": [DETAIL]})
    text = wire.dumps(snapshot.to_wire(dialect.renames(interface)))
    for name in present:
        assert name in text
    for name in absent:
        assert name not in text
    assert ChargeStatus.from_wire(wire.loads(text)) == snapshot


def test_money_is_exact_decimal_in_and_out_never_float() -> None:
    order = from_json(ChargeOrderInfo, wire.dumps(ORDER).replace('"12.00"', "12.00").replace('"8.00"', "0.10"))
    assert order.TotalMoney == Decimal("12.00") and isinstance(order.TotalMoney, Decimal)
    assert order.TotalElecMoney == Decimal("0.10")
    text = wire.dumps(order.to_wire())
    assert '"TotalMoney":12.00' in text and '"TotalElecMoney":0.10' in text  # the digits as given, as numbers
    assert wire.dumps({"a": Decimal("0.1") + Decimal("0.2")}) == '{"a":0.3}'
    with pytest.raises(wire.WireError, match="float"):
        wire.dumps({"TotalMoney": 12.0})
    assert isinstance(wire.loads(b'{"x": 0.1}')["x"], Decimal)


@pytest.mark.parametrize("field, value, why", [
    ("TotalMoney", "12.001", "at most 2 decimal places"),
    ("TotalMoney", "-1.00", "between 0"),
    ("TotalMoney", True, "not true/false"),
    ("TotalMoney", "abc", "decimal number"),
    ("StartChargeSeq", "MA1G55M8X0001", "27 letters or digits"),
    ("StartChargeSeq", 123456789012345678901234567, "ids are JSON strings"),
    ("ConnectorID", 12, "ids are JSON strings, not int"),
    ("ConnectorID", "", "1 to 26"),
    ("StartTime", "2026/01/01 12:00", "yyyy-MM-dd HH:mm:ss"),
    ("StopReason", 100, "less than or equal to 99"),
    ("StopReason", True, "not true/false"),
    ("SumPeriod", 2, "SumPeriod is 2 but 1 ChargeDetails"),
])
def test_an_invalid_field_is_refused_naming_it(field: str, value: Any, why: str) -> None:
    with pytest.raises(DataError, match=why) as refused:
        ChargeOrderInfo.from_wire({**ORDER, field: value})
    assert field in str(refused.value) or field == "SumPeriod"


def test_a_prices_fourth_decimal_is_kept_and_a_fifth_refused() -> None:
    assert PolicyInfo.from_wire({"StartTime": "083000", "ElecPrice": "1.2345", "SevicePrice": 0}).ElecPrice == \
        Decimal("1.2345")
    with pytest.raises(DataError, match="ElecPrice: a price"):
        PolicyInfo.from_wire({"StartTime": "083000", "ElecPrice": "1.23456", "SevicePrice": 0})
    with pytest.raises(DataError, match="StartTime: must be HHmmss"):
        PolicyInfo.from_wire({"StartTime": "246000", "ElecPrice": "1", "SevicePrice": 0})


def test_unknown_fields_are_ignored_and_text_with_control_characters_refused() -> None:
    order = ChargeOrderInfo.from_wire({**ORDER, "BizExtParams": {"x": 1}, "PvType": 3})
    assert "BizExtParams" not in wire.dumps(order.to_wire())
    with pytest.raises(DataError, match="OperatorSecret: contains U\\+0000"):
        TokenRequest.from_wire({"OperatorID": "MA1G55M8X", "OperatorSecret": "a\x00b"})


def test_station_status_asks_for_at_most_50_stations() -> None:
    assert len(StationStatusRequest.from_wire({"StationIDs": [str(i) for i in range(50)]}).StationIDs) == 50
    with pytest.raises(DataError, match="StationIDs: List should have at most 50"):
        StationStatusRequest.from_wire({"StationIDs": [str(i) for i in range(51)]})
    with pytest.raises(DataError, match="StationIDs.0: ids are JSON strings"):
        StationStatusRequest.from_wire({"StationIDs": [3101150001]})


def test_policy_periods_must_match_their_count_and_order() -> None:
    base = {"EquipBizSeq": SEQ, "ConnectorID": "1", "SuccStat": 0}
    periods = [{"StartTime": "000000", "ElecPrice": 1, "SevicePrice": 0}, {"StartTime": "080000", "ElecPrice": 2,
                                                                            "SevicePrice": 0}]
    assert BusinessPolicyResponse.from_wire({**base, "SumPeriod": 2, "PolicyInfos": periods}).SumPeriod == 2
    with pytest.raises(DataError, match="SumPeriod is 1"):
        BusinessPolicyResponse.from_wire({**base, "SumPeriod": 1, "PolicyInfos": periods})
    with pytest.raises(DataError, match="increasing StartTime"):
        BusinessPolicyResponse.from_wire({**base, "SumPeriod": 2, "PolicyInfos": periods[::-1]})


def test_json_that_a_peer_may_not_send_is_refused() -> None:
    for raw, why in ((b'{"a":1,"a":2}', "occurs twice"), (b'{"a":NaN}', "not a number"), (b"{'a':1}", "not JSON"),
                     (b"\xff\xfe", "not JSON"), (b"[" * 40 + b"]" * 40, "nested deeper")):
        with pytest.raises(wire.WireError, match=why):
            wire.loads(raw)


def test_every_interface_has_a_request_and_an_answer_model() -> None:
    assert len(INTERFACES) == 16  # the 2016 standard's 15 and the 2021 edition's notification_stationInfo
    assert {name for name, i in INTERFACES.items() if not i.idempotent} == {"query_start_charge", "query_stop_charge"}


@settings(max_examples=150)
@given(business_objects, st.sampled_from(list(Dialect)))
def test_any_business_object_round_trips_through_json_and_encryption(obj: Model, dialect: Dialect) -> None:
    names = dialect.renames("query_equip_charge_status")
    data = KEYS.encrypt(wire.dumps(obj.to_wire(names)).encode("utf-8"))
    assert type(obj).from_wire(wire.loads(KEYS.decrypt(data))) == obj
