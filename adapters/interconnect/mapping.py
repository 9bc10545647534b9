"""Our ids and states as T/CEC sees them (docs/interconnect.md, "Ids"), written once for the handlers,
the pushes and the bench.

* **StationID**: the first 20 hexadecimal digits of the station's uuid (lower case), within the
  standard's 20 characters. It is not stored anywhere: a StationID is turned back into the range of
  uuids that start with it and found by the catalogue's primary key (:func:`station_range`), always
  within the peer's own tenant. 20 digits are 80 bits of a random uuid: two stations of one tenant
  sharing them is not a case we serve (:func:`station_range` would find both and the handler takes
  none).
* **EquipmentID**: the pile's 14-digit YKC number.
* **ConnectorID**: the pile number and the gun number in two digits, 16 digits (``3201060001923601``
  is gun 1 of pile ``32010600019236``), as YKC piles print it on their QR codes.
* **StartChargeSeq** of a session no peer started (an app, a card, a pile's own start), pushed to a
  regulator: our OperatorID as the regulator knows us and the first 18 hexadecimal digits of the
  session's uuid in capitals (:func:`session_seq`), 27 characters as the standard wants. The trade
  serial (32 digits) does not fit; the uuid is derived from it, so the id is the same whenever it is
  made, and :func:`session_range` turns it back into the uuids it stands for, as for a StationID
  (72 bits: two sessions of one tenant sharing them is not a case we serve). Digits and capitals only,
  so a peer whose database folds case (MySQL's default collation) reads the same id.
"""

from __future__ import annotations

import re
from uuid import UUID

from adapters.interconnect.tcec.models.codes import ConnectorStatus, StartChargeSeqStat

STATION_DIGITS = 20
CONNECTOR = re.compile(r"(\d{14})(\d{2})")
STATION = re.compile(r"[0-9a-fA-F]{20}")
SESSION_DIGITS = 18
SESSION_SEQ = re.compile(r"[0-9A-Za-z]{9}([0-9a-fA-F]{18})")


def station_code(station_id: UUID) -> str:
    return station_id.hex[:STATION_DIGITS]


def station_range(code: str) -> tuple[UUID, UUID] | None:
    """The uuids a StationID stands for (first, last), or None if it is not one of ours."""
    if not isinstance(code, str) or not STATION.fullmatch(code):
        return None
    code = code.lower()
    return UUID(code + "0" * 12), UUID(code + "f" * 12)


def session_seq(our_operator_id: str, session_id: UUID) -> str:
    """A session's StartChargeSeq for a regulator (see the module)."""
    return our_operator_id + session_id.hex[:SESSION_DIGITS].upper()


def session_range(seq: str) -> tuple[UUID, UUID] | None:
    """The session uuids a :func:`session_seq` stands for (first, last), or None if it is not one of ours."""
    found = SESSION_SEQ.fullmatch(seq) if isinstance(seq, str) else None
    if found is None:
        return None
    digits = found.group(1).lower()
    return UUID(digits + "0" * 14), UUID(digits + "f" * 14)


def connector_code(pile_no: str, gun_no: int) -> str:
    return f"{pile_no}{gun_no:02d}"


def parse_connector(code: str) -> tuple[str, int] | None:
    """(pile number, gun number) of a ConnectorID of ours, or None."""
    found = CONNECTOR.fullmatch(code) if isinstance(code, str) else None
    if found is None or found.group(2) == "00":
        return None
    return found.group(1), int(found.group(2))


def connector_status(*, enabled: bool, online: bool, status: str, plugged: bool, faults: object) -> ConnectorStatus:
    """A gun as the pile link last reported it, as T/CEC's connector status.

    Offline (0) when the pile is offline, disabled by its operator (out of service), or has not
    reported the gun since it logged in; a fault (255) when the gun reports one; charging (3);
    occupied (2) when a plug is in and it is not charging; idle (1) otherwise. T/CEC's 4
    (reserved/locked) has no counterpart here.
    """
    if not enabled or not online or status == "offline":
        return ConnectorStatus.OFFLINE
    if faults or status == "fault":
        return ConnectorStatus.FAULT
    if status == "charging":
        return ConnectorStatus.CHARGING
    return ConnectorStatus.OCCUPIED if plugged else ConnectorStatus.IDLE


SEQ_STAT = {"requested": StartChargeSeqStat.STARTING, "starting": StartChargeSeqStat.STARTING,
            "charging": StartChargeSeqStat.CHARGING, "stopping": StartChargeSeqStat.STOPPING,
            "finished": StartChargeSeqStat.FINISHED, "abandoned": StartChargeSeqStat.FINISHED,
            "failed": StartChargeSeqStat.FINISHED}


def seq_stat(state: str) -> StartChargeSeqStat:
    """A session's state as ``StartChargeSeqStat`` (1 starting, 2 charging, 3 stopping, 4 finished)."""
    return SEQ_STAT.get(state, StartChargeSeqStat.UNKNOWN)


STOPPED_BY_USER, STOPPED_BY_PLATFORM, STOPPED_BY_BMS, CHARGER_FAULT, DISCONNECTED = 0, 1, 2, 3, 4
CLOSED_WITHOUT_RECORD = 5  # custom: the session was closed without the pile's record (priced from readings)


def stop_reason(ykc_reason: int | None, *, by_peer: bool) -> int:
    """T/CEC's StopReason of a closed session: the peer's own stop (1) first, then the pile's YKC
    stop reason (0x41 SOC full: BMS; 0x40 and 0x42..0x49, a normal end: the user; 0x4B control pilot
    disconnected: connector; any other failure: charger fault), else 5 (no record: closed by the
    platform, priced from the readings)."""
    if by_peer:
        return STOPPED_BY_PLATFORM
    if ykc_reason is None:
        return CLOSED_WITHOUT_RECORD
    if ykc_reason == 0x41:
        return STOPPED_BY_BMS
    if 0x40 <= ykc_reason <= 0x49:
        return STOPPED_BY_USER
    if ykc_reason == 0x4B:
        return DISCONNECTED
    return CHARGER_FAULT
