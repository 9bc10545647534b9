"""云快充 (YKC) 1.5/1.6 charger protocol codec: envelope, field types, one dataclass per frame type.

Pure and synchronous: no sockets, no clocks, no domain imports. The asyncio link uses it like::

    decoder = FrameDecoder(lenient_crc=True, length_filter=plausible_length)
    for item in decoder.feed(chunk):          # Frames and DecodeErrors, in stream order
        ...
        msg = decode_message(frame)           # raises DecodeError
        writer.write(encode_reply(frame, LoginAck(msg.pile_no, 0)))

Units on the messages are the protocol's integers: energy 0.0001 kWh, unit prices 0.00001 yuan/kWh,
amounts 0.0001 yuan, balances fen (``*_fen``), ``_dv``/``_da``/``_cv`` 0.1 V / 0.1 A / 0.01 V,
temperatures °C with the offset applied. See docs/protocols/ykc.md.
"""

from pile_link.ykc.base import MESSAGES, Message, message_class, plausible_length, register
from pile_link.ykc.bms import (
    BmsAbort,
    BmsDemand,
    BmsError,
    BmsHandshake,
    BmsParameters,
    BmsStatus,
    ChargeEnd,
    ChargerAbort,
)
from pile_link.ykc.cards import (
    BalanceUpdate,
    BalanceUpdateAck,
    CardClearResult,
    CardQueryResult,
    OfflineCard,
    OfflineCardClear,
    OfflineCardClearAck,
    OfflineCardQuery,
    OfflineCardQueryAck,
    OfflineCardSync,
    OfflineCardSyncAck,
)
from pile_link.ykc.cp56 import Cp56Datetime
from pile_link.ykc.errors import DecodeError, EncodeError, YkcError
from pile_link.ykc.frame import (
    MAX_FRAME,
    MAX_PAYLOAD,
    Frame,
    FrameDecoder,
    SequenceCounter,
    crc16_modbus,
    encode_frame,
)
from pile_link.ykc.maintenance import (
    ParkingLockCommand,
    ParkingLockReply,
    ParkingLockStatus,
    Reboot,
    RebootAck,
    RemoteUpdate,
    RemoteUpdateAck,
    TimeSync,
    TimeSyncAck,
    WorkParams,
    WorkParamsAck,
)
from pile_link.ykc.messages import decode_message, encode_message, encode_reply
from pile_link.ykc.realtime import ReadRealtime, RealtimeData
from pile_link.ykc.login import (
    TIERS,
    BillingModelReply,
    BillingModelRequest,
    BillingModelSet,
    BillingModelSetAck,
    BillingModelVerify,
    BillingModelVerifyAck,
    Heartbeat,
    HeartbeatAck,
    Login,
    LoginAck,
    TierRate,
)
from pile_link.ykc.transactions import (
    ParallelRemoteStart,
    ParallelRemoteStartReply,
    ParallelStartAuthReply,
    ParallelStartRequest,
    RemoteStart,
    RemoteStartReply,
    RemoteStop,
    RemoteStopReply,
    StartAuthReply,
    StartRequest,
    TierUsage,
    TransactionConfirm,
    TransactionRecord,
    TransactionRecordV17,
)

__all__ = [
    # envelope
    "crc16_modbus",
    "Frame",
    "FrameDecoder",
    "SequenceCounter",
    "encode_frame",
    "MAX_FRAME",
    "MAX_PAYLOAD",
    # errors
    "YkcError",
    "DecodeError",
    "EncodeError",
    # messages
    "MESSAGES",
    "Message",
    "register",
    "message_class",
    "plausible_length",
    "decode_message",
    "encode_message",
    "encode_reply",
    "Cp56Datetime",
    "TIERS",
    "TierRate",
    "TierUsage",
    "OfflineCard",
    "CardClearResult",
    "CardQueryResult",
    "Login",
    "LoginAck",
    "Heartbeat",
    "HeartbeatAck",
    "BillingModelVerify",
    "BillingModelVerifyAck",
    "BillingModelRequest",
    "BillingModelReply",
    "BillingModelSet",
    "BillingModelSetAck",
    "ReadRealtime",
    "RealtimeData",
    "BmsHandshake",
    "BmsParameters",
    "ChargeEnd",
    "BmsError",
    "BmsAbort",
    "ChargerAbort",
    "BmsDemand",
    "BmsStatus",
    "StartRequest",
    "StartAuthReply",
    "RemoteStartReply",
    "RemoteStart",
    "RemoteStopReply",
    "RemoteStop",
    "TransactionRecord",
    "TransactionRecordV17",
    "TransactionConfirm",
    "BalanceUpdateAck",
    "BalanceUpdate",
    "OfflineCardSyncAck",
    "OfflineCardSync",
    "OfflineCardClearAck",
    "OfflineCardClear",
    "OfflineCardQueryAck",
    "OfflineCardQuery",
    "WorkParamsAck",
    "WorkParams",
    "TimeSyncAck",
    "TimeSync",
    "ParkingLockStatus",
    "ParkingLockCommand",
    "ParkingLockReply",
    "RebootAck",
    "Reboot",
    "RemoteUpdateAck",
    "RemoteUpdate",
    "ParallelStartRequest",
    "ParallelStartAuthReply",
    "ParallelRemoteStartReply",
    "ParallelRemoteStart",
]
