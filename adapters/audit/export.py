"""Exports for a period: the journal, the trial balance, and a reconciliation against the payment
platforms' bills.

**Journal** (CSV, one line per posting): ``notification_id, recorded_at, tenant_id, wallet_id,
driver_id, event, key, reference, posting_set, account, debit_fen, credit_fen``. ``posting_set`` is
0 for an event's postings and 1 for a capture's release of the rest of its hold.

**Trial balance** (CSV, one line per account): ``account, opening_fen, debit_fen, credit_fen,
closing_fen`` (debit positive), and a ``total`` line whose every column is zero when the books balance.

**Reconciliation** of the ledger's gateway top-ups and refunds against

* a **WeChat Pay trade bill** (交易账单, type ALL), as the platform publishes it: comma-separated,
  a header line, detail lines whose every field starts with a backtick, then a summary header
  (总交易单数, …) and a summary line. Columns read, by header name (their order is not relied on):
  ``商户订单号`` (our out_trade_no), ``微信订单号``, ``交易状态`` (``SUCCESS`` a payment, ``REFUND`` a
  refund), ``订单金额`` (yuan), ``商户退款单号`` (our refund id), ``退款金额`` (yuan);
* an **Alipay bill file** (账务/业务明细, ``trade`` type), as downloaded from the bill URL: comment
  lines starting with ``#``, a header line, detail lines, then ``#`` summary lines; usually GBK.
  Columns read: ``商户订单号``, ``支付宝交易号``, ``业务类型`` (``交易`` a payment, ``退款`` a refund),
  ``订单金额（元）``, ``商家实收（元）`` (negative on a refund line), ``退款批次号/请求号`` (our refund id).

Each ledger line and bill line ends up ``matched``, ``mismatched`` (same id, other amount),
``missing_in_bill`` or ``missing_in_ledger``.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg

from adapters.audit.store import read_events
from domain.audit.stored import as_iso, as_uuid, loads

JOURNAL_COLUMNS = ("notification_id", "recorded_at", "tenant_id", "wallet_id", "driver_id", "event", "key",
                   "reference", "posting_set", "account", "debit_fen", "credit_fen")
REFERENCE_FIELDS = ("payment_ref", "hold_id", "refund_id", "reference")


@dataclass
class WalletLine:
    """One wallet event with postings, decoded from its stored JSON."""

    notification_id: int
    recorded_at: str
    wallet_id: UUID
    event: str
    attrs: dict[str, Any]

    @property
    def posting_sets(self) -> list[list[list[Any]]]:
        return [p for p in (self.attrs.get("postings"), self.attrs.get("release")) if p]


def wallet_lines(conn: psycopg.Connection[Any], tenant: UUID | None = None) -> Iterator[tuple[WalletLine, dict]]:
    """Every wallet event in notification order, with its wallet's (tenant, driver)."""
    owners: dict[Any, dict[str, Any]] = {}
    for oid, _version, topic, state, nid in read_events(conn, "wallets_events", tenant=tenant):
        attrs = loads(state)
        event = topic.rsplit(":", 1)[-1]
        if event == "Wallet.Opened":
            owners[oid] = {"tenant_id": as_uuid(attrs["tenant_id"]), "driver_id": attrs["driver_id"]}
        yield WalletLine(nid, as_iso(attrs["timestamp"]), oid, event, attrs), owners.get(oid, {})


def _in(stamp: str, start: datetime | None, end: datetime | None) -> str:
    """'before', 'in' or 'after' the period [start, end)."""
    at = datetime.fromisoformat(stamp)
    if start is not None and at < start:
        return "before"
    if end is not None and at >= end:
        return "after"
    return "in"


def export_books(database_url: str, journal: io.TextIOBase | None, trial_balance: io.TextIOBase | None, *,
                 start: datetime | None = None, end: datetime | None = None,
                 tenant: UUID | None = None) -> dict[str, list[int]]:
    """Write the period's journal and trial balance; returns {account: [opening, debit, credit, closing]}."""
    accounts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    writer = csv.writer(journal) if journal is not None else None
    if writer is not None:
        writer.writerow(JOURNAL_COLUMNS)
    with psycopg.connect(database_url) as conn:
        for line, owner in wallet_lines(conn, tenant):
            when = _in(line.recorded_at, start, end)
            if when == "after":
                continue
            reference = next((line.attrs[f] for f in REFERENCE_FIELDS if f in line.attrs), "")
            for index, postings in enumerate(line.posting_sets):
                for account, amount in postings:
                    row = accounts[account]
                    if when == "before":
                        row[0] += amount
                        continue
                    row[1 if amount > 0 else 2] += abs(amount)
                    if writer is not None:
                        writer.writerow((line.notification_id, line.recorded_at, owner.get("tenant_id", ""),
                                         line.wallet_id, owner.get("driver_id", ""), line.event,
                                         line.attrs.get("key", ""), reference, index, account,
                                         amount if amount > 0 else 0, -amount if amount < 0 else 0))
    for row in accounts.values():
        row[3] = row[0] + row[1] - row[2]
    if trial_balance is not None:
        tb = csv.writer(trial_balance)
        tb.writerow(("account", "opening_fen", "debit_fen", "credit_fen", "closing_fen"))
        for account, row in sorted(accounts.items()):
            tb.writerow((account, *row))
        opening, debit, credit, closing = (sum(r[i] for r in accounts.values()) for i in range(4))
        tb.writerow(("total", opening, debit - credit, 0, closing))
    return dict(accounts)


# ---- the payment platforms' bills -----------------------------------------------------------------
@dataclass(frozen=True)
class BillLine:
    provider: str
    kind: str  # payment | refund
    our_id: str  # out_trade_no of a payment, our refund id of a refund
    provider_id: str
    amount_fen: int


def yuan_to_fen(text: str) -> int:
    try:
        value = Decimal(text.strip().lstrip("`").replace(",", "") or "0") * 100
    except InvalidOperation:
        raise ValueError(f"not an amount in yuan: {text!r}") from None
    if value != value.to_integral_value():
        raise ValueError(f"an amount in yuan has at most two decimals: {text!r}")
    return int(value)


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ValueError("a bill file is UTF-8 or GBK")


def parse_wechat_bill(data: bytes) -> list[BillLine]:
    """Lines of a WeChat Pay trade bill (ALL): payments (SUCCESS) and refunds (REFUND)."""
    rows = list(csv.reader(io.StringIO(_decode(data).replace("\r\n", "\n"))))
    if not rows:
        return []
    header = [h.strip() for h in rows[0]]
    col = {name: i for i, name in enumerate(header)}
    for needed in ("商户订单号", "交易状态", "订单金额"):
        if needed not in col:
            raise ValueError(f"not a WeChat Pay trade bill: no column {needed!r}")
    lines = []
    for row in rows[1:]:
        if not row or not row[0].startswith("`"):
            break  # the summary header (总交易单数, …) and line follow the details
        value = {name: row[i].strip().lstrip("`") for name, i in col.items() if i < len(row)}
        if value["交易状态"] == "REFUND":
            lines.append(BillLine("wechat", "refund", value.get("商户退款单号", ""), value.get("微信退款单号", ""),
                                  yuan_to_fen(value.get("退款金额", "0"))))
        elif value["交易状态"] == "SUCCESS":
            lines.append(BillLine("wechat", "payment", value["商户订单号"], value.get("微信订单号", ""),
                                  yuan_to_fen(value["订单金额"])))
    return lines


def parse_alipay_bill(data: bytes) -> list[BillLine]:
    """Lines of an Alipay trade bill (业务明细): payments (交易) and refunds (退款)."""
    text = _decode(data)
    rows = [r for r in csv.reader(io.StringIO(text.replace("\r\n", "\n"))) if r and not r[0].startswith("#")]
    if not rows:
        return []
    header = [h.strip().replace("(", "（").replace(")", "）") for h in rows[0]]
    col = {name: i for i, name in enumerate(header)}
    for needed in ("商户订单号", "业务类型", "订单金额（元）"):
        if needed not in col:
            raise ValueError(f"not an Alipay trade bill: no column {needed!r}")
    lines = []
    for row in rows[1:]:
        value = {name: row[i].strip().strip("\t") for name, i in col.items() if i < len(row)}
        kind = value.get("业务类型", "")
        if kind == "交易":
            lines.append(BillLine("alipay", "payment", value["商户订单号"], value.get("支付宝交易号", ""),
                                  yuan_to_fen(value["订单金额（元）"])))
        elif kind == "退款":
            received = value.get("商家实收（元）") or value["订单金额（元）"]
            lines.append(BillLine("alipay", "refund", value.get("退款批次号/请求号", ""), value.get("支付宝交易号", ""),
                                  abs(yuan_to_fen(received))))
    return lines


@dataclass
class Reconciled:
    status: str  # matched | mismatched | missing_in_bill | missing_in_ledger
    provider: str
    kind: str
    our_id: str
    ledger_fen: int | None
    bill_fen: int | None
    provider_id: str = ""
    notification_id: int | None = None


def ledger_lines(database_url: str, *, start: datetime | None = None, end: datetime | None = None,
                 tenant: UUID | None = None) -> list[tuple[str, str, str, int, int]]:
    """The period's gateway top-ups and refunds: (provider, kind, our id, fen, notification id)."""
    out = []
    with psycopg.connect(database_url) as conn:
        for line, _owner in wallet_lines(conn, tenant):
            if _in(line.recorded_at, start, end) != "in":
                continue
            a = line.attrs
            if line.event == "Wallet.ToppedUp" and a["provider"] in ("wechat", "alipay"):
                out.append((a["provider"], "payment", a["payment_ref"], a["postings"][0][1], line.notification_id))
            elif line.event == "Wallet.RefundRequested" and a["provider"] in ("wechat", "alipay"):
                out.append((a["provider"], "refund", a["refund_id"], a["amount"], line.notification_id))
    return out


def reconcile(ledger: Iterable[tuple[str, str, str, int, int]], bills: Iterable[BillLine]) -> list[Reconciled]:
    mine = {(p, k, i): (fen, nid) for p, k, i, fen, nid in ledger}
    theirs = {(b.provider, b.kind, b.our_id): b for b in bills}
    out = []
    for key in sorted(mine.keys() | theirs.keys()):
        provider, kind, our_id = key
        fen, nid = mine.get(key, (None, None))
        bill = theirs.get(key)
        if bill is None:
            status = "missing_in_bill"
        elif fen is None:
            status = "missing_in_ledger"
        else:
            status = "matched" if bill.amount_fen == fen else "mismatched"
        out.append(Reconciled(status, provider, kind, our_id, fen, bill.amount_fen if bill else None,
                              bill.provider_id if bill else "", nid))
    return out


def write_reconciliation(lines: list[Reconciled], out: io.TextIOBase) -> None:
    writer = csv.writer(out)
    writer.writerow(("status", "provider", "kind", "our_id", "ledger_fen", "bill_fen", "provider_id",
                     "notification_id"))
    for r in lines:
        writer.writerow((r.status, r.provider, r.kind, r.our_id, "" if r.ledger_fen is None else r.ledger_fen,
                         "" if r.bill_fen is None else r.bill_fen, r.provider_id,
                         "" if r.notification_id is None else r.notification_id))


def read_bills(wechat: Path | None, alipay: Path | None) -> list[BillLine]:
    lines: list[BillLine] = []
    if wechat is not None:
        lines += parse_wechat_bill(Path(wechat).read_bytes())
    if alipay is not None:
        lines += parse_alipay_bill(Path(alipay).read_bytes())
    return lines
