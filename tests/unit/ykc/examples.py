"""What the codec's tests share: one frame decoded alone, and one representative instance of every type."""

from __future__ import annotations

from datetime import datetime

from pile_link.ykc import (
    BalanceUpdate,
    BalanceUpdateAck,
    BillingModelReply,
    BillingModelRequest,
    BillingModelSet,
    BillingModelSetAck,
    BillingModelVerify,
    BillingModelVerifyAck,
    BmsAbort,
    BmsDemand,
    BmsError,
    BmsHandshake,
    BmsParameters,
    BmsStatus,
    CardClearResult,
    CardQueryResult,
    ChargeEnd,
    ChargerAbort,
    Frame,
    FrameDecoder,
    Heartbeat,
    HeartbeatAck,
    Login,
    LoginAck,
    Message,
    OfflineCard,
    OfflineCardClear,
    OfflineCardClearAck,
    OfflineCardQuery,
    OfflineCardQueryAck,
    OfflineCardSync,
    OfflineCardSyncAck,
    ParallelRemoteStart,
    ParallelRemoteStartReply,
    ParallelStartAuthReply,
    ParallelStartRequest,
    ParkingLockCommand,
    ParkingLockReply,
    ParkingLockStatus,
    ReadRealtime,
    RealtimeData,
    Reboot,
    RebootAck,
    RemoteStart,
    RemoteStartReply,
    RemoteStop,
    RemoteStopReply,
    RemoteUpdate,
    RemoteUpdateAck,
    StartAuthReply,
    StartRequest,
    TierRate,
    TierUsage,
    TimeSync,
    TimeSyncAck,
    TransactionConfirm,
    TransactionRecord,
    TransactionRecordV17,
    WorkParams,
    WorkParamsAck,
)


def decode_one(raw: bytes, *, lenient: bool = False) -> Frame:
    decoder = FrameDecoder(lenient_crc=lenient)
    items = decoder.feed(raw)
    assert len(items) == 1 and isinstance(items[0], Frame), items
    assert decoder.buffered == 0
    return items[0]


# -- one representative instance per type ---------------------------------------------------------

PILE, GUN, TRADE = "32010600019236", "01", "32010600019236012001061803423060"
T0 = datetime(2024, 12, 18, 17, 15, 30)
RATES = (TierRate(75000, 45000), TierRate(75000, 45000), TierRate(60000, 40000), TierRate(30000, 20000))
SLOTS = (0,) * 12 + (1,) * 12 + (2,) * 12 + (3,) * 12
EXAMPLES: list[Message] = [
    Login(PILE, 0, 2, 0x10, "V4.1.50", 0, "898604D11722D0348606", 2),
    LoginAck(PILE, 0),
    Heartbeat(PILE, GUN, 0),
    HeartbeatAck(PILE, GUN),
    BillingModelVerify(PILE, "0000"),
    BillingModelVerifyAck(PILE, "0001", 1),
    BillingModelRequest(PILE),
    BillingModelReply(PILE, "0001", RATES, 0, SLOTS),
    BillingModelSet(PILE, "0002", RATES, 0, SLOTS),
    BillingModelSetAck(PILE, 1),
    ReadRealtime(PILE, GUN),
    RealtimeData(
        trade_no=TRADE, pile_no=PILE, gun_no=GUN, status=3, holstered=0, plugged=1, voltage_dv=3732,
        current_da=1012, cable_temp_c=34, cable_code=bytes(8), soc_pct=78, battery_max_temp_c=35, elapsed_min=16,
        remaining_min=32, energy=88000, loss_energy=88000, amount=93280, hw_faults=0,
    ),  # fmt: skip
    BmsHandshake(
        trade_no=TRADE, pile_no=PILE, gun_no=GUN, bms_protocol_version=b"\x01\x01\x00", battery_type=6,
        rated_capacity_dah=1500, rated_voltage_dv=3800, battery_maker="CATL", pack_serial=7, production_year=2023,
        production_month=5, production_day=1, charge_cycles=12, ownership=1, reserved=0, vin="LSVAU2180N2183294",
        bms_software_version=bytes.fromhex("0101070E07FFFFFF"),
    ),  # fmt: skip
    BmsParameters(
        trade_no=TRADE, pile_no=PILE, gun_no=GUN, max_cell_voltage_cv=420, max_charge_current_da=2500,
        nominal_energy_dkwh=600, max_charge_voltage_dv=4500, max_temp_c=55, soc_permille=500, battery_voltage_dv=3900,
        pile_max_voltage_dv=7500, pile_min_voltage_dv=2000, pile_max_current_da=2500, pile_min_current_da=0,
    ),  # fmt: skip
    ChargeEnd(TRADE, PILE, GUN, 95, 380, 415, 25, 38, 45, 350, 1),
    BmsError(TRADE, PILE, GUN, bytes(8)),
    BmsAbort(TRADE, PILE, GUN, 0b01, 0, 0),
    ChargerAbort(TRADE, PILE, GUN, 0b0100, 0, 0),
    BmsDemand(
        trade_no=TRADE, pile_no=PILE, gun_no=GUN, voltage_demand_dv=5030, current_demand_da=1960, charge_mode=2,
        measured_voltage_dv=4749, measured_current_da=1138, max_cell_voltage_cv=344, max_cell_group=0, soc_pct=83,
        remaining_min=17, output_voltage_dv=4754, output_current_da=1170, elapsed_min=0,
    ),  # fmt: skip
    BmsStatus(TRADE, PILE, GUN, 12, 31, 3, 25, 7, 0b01_00_00_00_00_00_00_00),
    StartRequest(PILE, GUN, 1, 0, bytes.fromhex("00000000D14B0A54"), bytes(16), ""),
    StartAuthReply(TRADE, PILE, GUN, "0000001000000573", 100000, 1, 0),
    RemoteStartReply(TRADE, PILE, GUN, 0, 5),
    RemoteStart(TRADE, PILE, GUN, "0000001000000573", bytes.fromhex("00000000D14B0A54"), 100000),
    RemoteStopReply(PILE, GUN, 1, 0),
    RemoteStop(PILE, GUN),
    TransactionRecord(
        trade_no=TRADE, pile_no=PILE, gun_no=GUN, start_time=T0, end_time=T0.replace(minute=45),
        tiers=(TierUsage(150000, 0, 0, 0), TierUsage(130000, 12345, 12345, 16048),
               TierUsage(110000, 0, 0, 0), TierUsage(90000, 0, 0, 0)),
        meter_start=12_345_678_901, meter_end=12_345_691_246, energy=12345, loss_energy=12345, amount=16048,
        vin="LSVAU2180N2183294", trade_type=1, trade_time=T0.replace(minute=45), stop_reason=0x40,
        physical_card=bytes(8),
    ),  # fmt: skip
    TransactionRecordV17(
        trade_no=TRADE, pile_no=PILE, gun_no=GUN, start_time=T0, end_time=T0, tiers=(TierUsage(0, 0, 0, 0),) * 4,
        meter_start=0, meter_end=0, energy=0, loss_energy=0, amount=0, vin="", trade_type=2, trade_time=None,
        stop_reason=0x45, physical_card=bytes(8), meter_no="010000000000", meter_cipher=bytes(range(34)),
        meter_protocol_version=1, encryption_method=0,
    ),  # fmt: skip
    TransactionConfirm(TRADE, 0),
    BalanceUpdateAck(PILE, bytes(8), 0),
    BalanceUpdate(PILE, GUN, bytes(8), 100000),
    OfflineCardSyncAck(PILE, 1, 0),
    OfflineCardSync(PILE, (OfflineCard("0000001000000573", bytes.fromhex("00000000D14B0A54")),)),
    OfflineCardClearAck(PILE, (CardClearResult(bytes.fromhex("00000000D14B0A54"), 1, 0),)),
    OfflineCardClear(PILE, (bytes.fromhex("00000000D14B0A54"), bytes(8))),
    OfflineCardQueryAck(PILE, (CardQueryResult(bytes.fromhex("00000000D14B0A54"), 1),)),
    OfflineCardQuery(PILE, ()),
    WorkParamsAck(PILE, 1),
    WorkParams(PILE, 0, 100),
    TimeSyncAck(PILE, T0),
    TimeSync(PILE, T0),
    ParkingLockStatus(PILE, GUN, 0x55, 0x00, 80, 0, bytes(4)),
    ParkingLockCommand(PILE, GUN, 0xFF),
    ParkingLockReply(PILE, GUN, 1, bytes(4)),
    RebootAck(PILE, 1),
    Reboot(PILE, 2),
    RemoteUpdateAck(PILE, 0),
    RemoteUpdate(PILE, 1, 120, "114.55.114.174", 21, "sr", "sr123", "AC-7KW/20180131", 2, 60),
    ParallelStartRequest(PILE, GUN, 1, 0, bytes(8), bytes(16), "LSVAU2180N2183294", 0, "241218171530"),
    ParallelStartAuthReply(TRADE, PILE, GUN, "0000001000000573", 100000, 1, 0, "241218171530"),
    ParallelRemoteStartReply(TRADE, PILE, GUN, 1, 0, 1, "241218171530"),
    ParallelRemoteStart(TRADE, PILE, GUN, "0000001000000573", bytes(8), 100000, "241218171530"),
]
