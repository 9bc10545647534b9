"""The envelopes every T/CEC call travels in, the result codes, and the envelope's clock.

Request: ``{OperatorID, Data, TimeStamp, Seq, Sig}`` (all strings; ``OperatorID`` is the caller's).
Response: ``{Ret, Msg, Data, Sig}`` (``Ret`` an integer; ``Msg`` plain text outside the encryption,
``Data`` usually ``""`` on a refusal). Unknown envelope fields (some peers echo ``OperatorID`` in a
response) are ignored and never used to choose keys: they are outside the MAC.

``TimeStamp`` is ``yyyyMMddHHmmss`` in Asia/Shanghai (not epoch milliseconds); ``Seq`` four digits,
``0001``..``9999``, counting within one second (:class:`SeqCounter`).
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any
from zoneinfo import ZoneInfo

from adapters.interconnect.tcec import wire

SHANGHAI = ZoneInfo("Asia/Shanghai")
TIMESTAMP_FORMAT = "%Y%m%d%H%M%S"
REQUEST_FIELDS = ("OperatorID", "Data", "TimeStamp", "Seq", "Sig")
_OPERATOR_ID = re.compile(r"^[0-9A-Za-z]{9}$")
_TIMESTAMP = re.compile(r"^\d{14}$")
_SEQ = re.compile(r"^\d{4}$")
_SIG = re.compile(r"^[0-9A-Fa-f]{32}$")
SEQ_START_SPAN = 5000  # a second's first Seq is random below this: at least 4999 envelopes a second
MAX_DATA = 8 * 1024 * 1024  # characters of Base64; the HTTP door caps each body well below (64 KiB mostly)


class Ret(IntEnum):
    """``Ret``: the protocol outcome. A business outcome travels in ``Data`` (SuccStat/FailReason)."""

    BUSY = -1  # 系统繁忙: retry later
    OK = 0  # 请求成功
    SYSTEM_ERROR = 500  # 系统错误
    BAD_SIG = 4001  # 签名错误
    BAD_TOKEN = 4002  # Token错误
    BAD_ENVELOPE = 4003  # POST参数不合法 (also: stale TimeStamp, replayed envelope; docs/interconnect.md)
    BAD_DATA = 4004  # 请求的业务参数不合法 (also: unknown OperatorID, unknown interface)


MESSAGES = {Ret.BUSY: "系统繁忙 system busy, retry later", Ret.OK: "", Ret.SYSTEM_ERROR: "系统错误 system error",
            Ret.BAD_SIG: "签名错误 signature error", Ret.BAD_TOKEN: "Token错误 token error",
            Ret.BAD_ENVELOPE: "POST参数不合法 bad envelope", Ret.BAD_DATA: "请求的业务参数不合法 bad business parameters"}


class EnvelopeError(ValueError):
    """A body that is not a well-formed request envelope (Ret 4003)."""


@dataclass(frozen=True)
class RequestEnvelope:
    operator_id: str
    data: str  # exactly as received: the MAC is over this text
    timestamp: str
    seq: str
    sig: str

    @classmethod
    def parse(cls, body: bytes | str) -> RequestEnvelope:
        """The envelope of a request body; :class:`EnvelopeError` names what is missing or malformed."""
        try:
            value = wire.loads(body)
        except wire.WireError as error:
            raise EnvelopeError(f"the body is not a JSON envelope: {error}") from None
        if not isinstance(value, dict):
            raise EnvelopeError("the body is not a JSON object with OperatorID, Data, TimeStamp, Seq, Sig")
        missing = [name for name in REQUEST_FIELDS if name not in value or value[name] in (None, "")]
        if missing:
            raise EnvelopeError(f"missing {', '.join(missing)}")
        wrong = [name for name in REQUEST_FIELDS if not isinstance(value[name], str)]
        if wrong:
            raise EnvelopeError(f"{', '.join(wrong)} must be JSON strings")
        envelope = cls(value["OperatorID"], value["Data"], value["TimeStamp"], value["Seq"], value["Sig"])
        envelope.check()
        return envelope

    def check(self) -> None:
        if not _OPERATOR_ID.match(self.operator_id):
            raise EnvelopeError("OperatorID must be 9 letters or digits")
        if not _TIMESTAMP.match(self.timestamp) or parse_timestamp(self.timestamp) is None:
            raise EnvelopeError("TimeStamp must be yyyyMMddHHmmss")
        if not _SEQ.match(self.seq):
            raise EnvelopeError("Seq must be 4 digits (0001 to 9999)")
        if not _SIG.match(self.sig):
            raise EnvelopeError("Sig must be 32 hexadecimal characters")
        if len(self.data) > MAX_DATA:
            raise EnvelopeError(f"Data is over {MAX_DATA} characters")

    def body(self) -> dict[str, str]:
        return {"OperatorID": self.operator_id, "Data": self.data, "TimeStamp": self.timestamp, "Seq": self.seq,
                "Sig": self.sig}


@dataclass(frozen=True)
class ResponseEnvelope:
    ret: int
    msg: str
    data: str  # exactly as received (or as we send it)
    sig: str

    @classmethod
    def parse(cls, body: bytes | str) -> ResponseEnvelope:
        try:
            value = wire.loads(body)
        except wire.WireError as error:
            raise EnvelopeError(f"the answer is not a JSON envelope: {error}") from None
        if not isinstance(value, dict) or "Ret" not in value:
            raise EnvelopeError("the answer is not a JSON object with Ret, Msg, Data, Sig")
        ret = value["Ret"]
        if isinstance(ret, str) and re.fullmatch(r"-?\d{1,6}", ret):
            ret = int(ret)  # some peers quote it; the MAC is over str(Ret) either way
        if not isinstance(ret, int) or isinstance(ret, bool):
            raise EnvelopeError("Ret is not an integer")
        texts = {name: value.get(name) or "" for name in ("Msg", "Data", "Sig")}
        wrong = [name for name, text in texts.items() if not isinstance(text, str)]
        if wrong:
            raise EnvelopeError(f"{', '.join(wrong)} must be JSON strings")
        return cls(ret, texts["Msg"], texts["Data"], texts["Sig"])

    def body(self) -> dict[str, Any]:
        return {"Ret": int(self.ret), "Msg": self.msg, "Data": self.data, "Sig": self.sig}


def parse_timestamp(text: str) -> datetime | None:
    """An envelope TimeStamp as an aware instant (Asia/Shanghai); None if it is not one."""
    try:
        return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=SHANGHAI)
    except ValueError:
        return None


def format_timestamp(instant: datetime) -> str:
    if instant.tzinfo is None:
        raise ValueError("an envelope TimeStamp is made from an aware instant")
    return instant.astimezone(SHANGHAI).strftime(TIMESTAMP_FORMAT)


class SeqCounter:
    """``Seq`` for the envelopes one process sends one peer: counting within each TimeStamp second.

    Each second starts at a random number in 1..:data:`SEQ_START_SPAN` (then counts up to 9999): the pair
    (TimeStamp, Seq) is not unique across processes (note A.8), and two processes sending the same call
    in the same second from 0001 would send byte-identical envelopes (the IV is fixed), the second of
    which a careful peer refuses as a replay. Thread-safe; past 9999 in one second it raises rather than
    repeat a Seq."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._lock = threading.Lock()
        self._rng = rng or random.SystemRandom()
        self._second = ""
        self._count = 0

    def next(self, timestamp: str) -> str:
        with self._lock:
            if timestamp != self._second:
                self._second, self._count = timestamp, self._rng.randint(0, SEQ_START_SPAN - 1)
            if self._count >= 9999:
                raise RuntimeError(f"more than 9999 envelopes in the second {timestamp}")
            self._count += 1
            return f"{self._count:04d}"
