"""`audit export`: the journal, the trial balance, and the reconciliation against payment-platform bills;
and the `audit` command line end to end."""

from __future__ import annotations

import argparse
import csv
import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from adapters.cli import audit as audit_cli
from adapters.audit.export import (
    export_books,
    ledger_lines,
    parse_alipay_bill,
    parse_wechat_bill,
    reconcile,
    yuan_to_fen,
)
from domain.ledger import Ledger
from tests.factories import build_world

WECHAT_HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
                 "货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,"
                 "商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注")


def wechat_line(status: str, out_trade_no: str, amount: str, refund_no: str = "", refund: str = "0.00") -> str:
    fields = ["2026-11-22 10:00:00", "wx0000000000000001", "1900000001", "0", "", f"4200000{out_trade_no}",
              out_trade_no, "oUser", "JSAPI", status, "OTHERS", "CNY", amount, "0.00",
              f"5030{refund_no}" if refund_no else "", refund_no, refund, "0.00", "ORIGINAL" if refund_no else "",
              "SUCCESS" if refund_no else "", "charging top-up", "", "0.00", "0.60%", amount,
              refund if refund_no else "0.00", ""]
    return ",".join("`" + f for f in fields)


def wechat_bill(*lines: str) -> bytes:
    summary = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
    return ("\n".join([WECHAT_HEADER, *lines, summary, "`3,`150.00,`10.00,`0.00,`0.90,`150.00,`10.00"])
            + "\n").encode("utf-8")


ALIPAY_HEADER = ("支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,"
                 "订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,"
                 "券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注")


def alipay_bill(*lines: str) -> bytes:
    text = "\n".join(["#支付宝业务明细查询", "#账号：[20880000000000000156]", "#起始日期：[2026年11月22日 00:00:00]",
                      "#-----------------------------------------业务明细列表----------------------------------------",
                      ALIPAY_HEADER, *lines,
                      "#-----------------------------------------业务明细列表结束------------------------------------",
                      "#交易合计：1笔，商家实收：30.00元，商家优惠：0.00元"])
    return (text + "\n").encode("gb18030")


def alipay_line(kind: str, out_trade_no: str, amount: str, received: str, refund_no: str = "") -> str:
    return ",".join([f"2026112222001{out_trade_no}", out_trade_no, kind, "charging top-up", "2026-11-22 10:00:00",
                     "2026-11-22 10:00:05", "", "", "", "", "buyer@example.com", amount, received, "0.00", "0.00",
                     "0.00", "0.00", "0.00", "", "0.00", "0.00", refund_no, "0.18", "0.00", ""])


def test_bills_parse_in_their_published_layouts() -> None:
    wechat = parse_wechat_bill(wechat_bill(wechat_line("SUCCESS", "T1", "100.00"),
                                           wechat_line("REFUND", "T1", "100.00", "R1", "10.00")))
    assert [(b.kind, b.our_id, b.amount_fen) for b in wechat] == [("payment", "T1", 10000), ("refund", "R1", 1000)]
    alipay = parse_alipay_bill(alipay_bill(alipay_line("交易", "T2", "30.00", "30.00"),
                                           alipay_line("退款", "T2", "30.00", "-5.50", "R2")))
    assert [(b.kind, b.our_id, b.amount_fen) for b in alipay] == [("payment", "T2", 3000), ("refund", "R2", 550)]
    assert yuan_to_fen("`1,234.50") == 123450
    with pytest.raises(ValueError):
        yuan_to_fen("0.005")
    with pytest.raises(ValueError, match="no column"):
        parse_wechat_bill(b"a,b,c\n`1,`2,`3\n")


def ledger_with_payments(ledger: Ledger) -> None:
    world = build_world(ledger, top_up=0)
    for key, amount, provider in (("T1", 100_00, "wechat"), ("T2", 30_00, "alipay"), ("T3", 20_00, "wechat"),
                                  ("T4", 5_00, "alipay")):
        ledger.top_up(world.wallet_id, key=f"topup:{key}", amount=amount, provider=provider,
                      payment_ref=key)
    ledger.top_up(world.wallet_id, key="cash:1", amount=1_00, provider="cash", payment_ref="till")
    ledger.request_refund(world.wallet_id, key="R1", refund_id="R1", amount=10_00, provider="wechat")
    ledger.complete_refund(world.wallet_id, key="R1c", refund_id="R1", provider_ref="5030R1")


def test_reconciliation_lists_matched_missing_and_mismatched_lines(ledger: Ledger, database_url: str) -> None:
    ledger_with_payments(ledger)
    bills = (parse_wechat_bill(wechat_bill(wechat_line("SUCCESS", "T1", "100.00"),
                                           wechat_line("SUCCESS", "T9", "8.00"),
                                           wechat_line("REFUND", "T1", "100.00", "R1", "10.00")))
             + parse_alipay_bill(alipay_bill(alipay_line("交易", "T2", "29.00", "29.00"))))
    result = {(r.provider, r.kind, r.our_id): (r.status, r.ledger_fen, r.bill_fen)
              for r in reconcile(ledger_lines(database_url), bills)}
    assert result == {
        ("wechat", "payment", "T1"): ("matched", 10000, 10000),
        ("wechat", "refund", "R1"): ("matched", 1000, 1000),
        ("alipay", "payment", "T2"): ("mismatched", 3000, 2900),
        ("wechat", "payment", "T3"): ("missing_in_bill", 2000, None),
        ("alipay", "payment", "T4"): ("missing_in_bill", 500, None),
        ("wechat", "payment", "T9"): ("missing_in_ledger", None, 800),
    }


def test_journal_and_trial_balance_for_a_period(ledger: Ledger, database_url: str) -> None:
    ledger_with_payments(ledger)
    cut = datetime.now(timezone.utc)
    world = build_world(ledger, pile_no="32010600019300", driver="driver-2", top_up=7_00)
    journal, tb = io.StringIO(), io.StringIO()
    export_books(database_url, journal, tb)
    rows = list(csv.DictReader(io.StringIO(journal.getvalue())))
    assert sum(int(r["debit_fen"]) for r in rows) == sum(int(r["credit_fen"]) for r in rows) > 0
    assert {r["event"] for r in rows} == {"Wallet.ToppedUp", "Wallet.RefundRequested", "Wallet.RefundCompleted"}
    total = list(csv.reader(io.StringIO(tb.getvalue())))[-1]
    assert total == ["total", "0", "0", "0", "0"]
    # only the later period: the earlier postings become opening balances
    journal, tb = io.StringIO(), io.StringIO()
    accounts = export_books(database_url, journal, tb, start=cut)
    assert [r["driver_id"] for r in csv.DictReader(io.StringIO(journal.getvalue()))] == ["driver-2", "driver-2"]
    assert accounts["clearing:wechat"] == [100_00 + 20_00 - 10_00, 7_00, 0, 117_00]
    assert world.wallet_id


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    audit_cli.add_arguments(parser)
    return audit_cli.run(parser.parse_args(argv))


def test_the_audit_command_line(ledger: Ledger, database_url: str, nats_url: str, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    ledger_with_payments(ledger)
    common = ("--database-url", database_url, "--nats-url", nats_url)
    assert run_cli(*common, "replay", "--json", "--quiet") == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert run_cli(*common, "seal") == 0
    assert "published 3 seal(s)" in capsys.readouterr().out
    assert run_cli(*common, "verify") == 0
    assert "the chain holds" in capsys.readouterr().out
    (tmp_path / "wx.csv").write_bytes(wechat_bill(wechat_line("SUCCESS", "T1", "100.00")))
    assert run_cli(*common, "export", "--out", str(tmp_path), "--wechat-bill", str(tmp_path / "wx.csv")) == 1
    out = capsys.readouterr().out
    assert "matched 1" in out and "missing_in_bill 4" in out  # T2, T3, T4 and the refund R1
    assert (tmp_path / "journal.csv").exists() and (tmp_path / "reconciliation.csv").exists()
    # a tampered row: verify exits 1 and names it
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE wallets_events SET state = convert_to(replace(convert_from(state, 'UTF8'), "
                     "'\"clearing:wechat\",10000', '\"clearing:wechat\",10001'), 'UTF8') WHERE topic LIKE '%%ToppedUp'")
    assert run_cli(*common, "verify", "--json") == 1
    report = json.loads(capsys.readouterr().out)
    assert report["first_break"]["kind"] == "edited"
    assert run_cli(*common, "replay", "--quiet") == 1
    assert "DIFFERENCE [posting_sets_balance]" in capsys.readouterr().out
    assert timedelta(days=1)
