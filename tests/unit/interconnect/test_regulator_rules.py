"""The regulator's pushes without a database: our StartChargeSeq for a session no peer started (27 letters or
digits, the same whenever made, back to the session's uuid range), what an answer to notification_stationInfo
means, and the push's business object on the wire."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.interconnect.mapping import session_range, session_seq
from adapters.interconnect.outbox.sender import judge
from adapters.interconnect.tcec import wire
from adapters.interconnect.tcec.interfaces import INTERFACES, Role
from adapters.interconnect.tcec.models.base import DataError
from adapters.interconnect.tcec.models.orders import CheckedOrder
from adapters.interconnect.tcec.models.stations import StationInfoAck, StationInfoNotification
from domain.session import ChargingSession

INFO = {"StationID": "c4a43ed91a064898bd4b", "OperatorID": "MA2OURS01", "EquipmentOwnerID": "MA2OURS01",
        "StationName": "一号站", "CountryCode": "CN", "AreaCode": "310115", "Address": "1 Test Road", "ServiceTel": "",
        "StationType": 1, "StationStatus": 50, "ParkNums": 0, "StationLng": "121.470000", "StationLat": "31.230000",
        "Construction": 255, "EquipmentInfos": []}


@given(st.uuids(), st.sampled_from(["MA2OURS01", "APLATFORM", "a1b2c3d4e"]))
def test_a_sessions_seq_is_27_letters_or_digits_and_leads_back_to_it(session_id: uuid.UUID, operator: str) -> None:
    seq = session_seq(operator, session_id)
    assert len(seq) == 27 and seq.startswith(operator) and seq[9:] == seq[9:].upper()
    low, high = session_range(seq)
    assert low <= session_id <= high
    assert session_range(seq.lower()) == (low, high)  # a peer that folds case names the same session
    assert CheckedOrder.from_wire({"StartChargeSeq": seq, "TotalPower": 0, "TotalMoney": 0}).StartChargeSeq == seq


def test_a_sessions_seq_is_the_same_whenever_it_is_made_and_other_ids_are_not_ours() -> None:
    trade_no = "32010600019236022611301000000001"
    assert session_seq("MA2OURS01", ChargingSession.create_id(trade_no)) == \
        session_seq("MA2OURS01", ChargingSession.create_id(trade_no))
    for other in ("BPLATFORM000000000000000001"[:-1] + "G", "MA2OURS01" + "0" * 17, None, 12):
        assert session_range(other) is None  # type: ignore[arg-type]


def test_notification_station_info_is_the_2021_editions_push_to_a_customer_side() -> None:
    interface = INTERFACES["notification_stationInfo"]
    assert interface.callers == frozenset({Role.INFRASTRUCTURE}) and interface.idempotent
    pushed = StationInfoNotification.from_wire({"StationInfo": INFO})
    assert wire.loads(wire.dumps(pushed.to_wire()))["StationInfo"]["StationName"] == "一号站"
    with pytest.raises(DataError, match="StationID"):
        StationInfoNotification.from_wire({"StationInfo": {**INFO, "StationID": 12}})


def test_what_a_regulators_answer_to_a_station_entry_means() -> None:
    pushed = StationInfoNotification.from_wire({"StationInfo": INFO})
    assert judge("notification_stationInfo", pushed, StationInfoAck(Status=0)).state == "delivered"
    assert judge("notification_stationInfo", pushed, StationInfoAck(Status=1)).state == "ignored"  # never resent
