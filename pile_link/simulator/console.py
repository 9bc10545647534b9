"""The live log an operator reads: one line per notable event.

Heartbeats and idle realtime frames are not printed; a charging gun prints its power, SOC and
energy at most once per ``progress`` simulated seconds. Everything is still in the event log.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TextIO

from pile_link.simulator.events import Event
from pile_link.simulator.gun import stop_reason_name

START_FAIL = {0: "", 1: "pile number mismatch", 2: "gun busy", 3: "device fault", 4: "offline", 5: "not plugged"}
STOP_FAIL = {0: "", 1: "pile number mismatch", 2: "gun not charging", 3: "other"}
CARD_FAIL = {1: "no such account", 2: "account frozen", 3: "insufficient balance", 4: "card has an unsettled order",
             5: "pile disabled", 6: "account may not charge here", 7: "wrong password", 8: "station capacity",
             9: "VIN unknown", 10: "pile has an unsettled order", 11: "pile takes no cards"}


def kwh(energy: int) -> str:
    return f"{energy / 10_000:.4f} kWh"


def yuan_amount(amount: int) -> str:
    """0.0001 yuan -> yuan."""
    return f"{amount / 10_000:.2f} yuan"


def yuan_fen(fen: int | None) -> str:
    return "no limit" if fen is None else f"{fen / 100:.2f} yuan"


def _describe(e: Event) -> str | None:
    d = e.data
    match e.kind:
        case "connected":
            return "connected"
        case "connect_failed":
            return f"cannot connect: {d['reason']}"
        case "login_ok":
            crc = "high byte first (quirky)" if d["crc_order"] == "be" else "low byte first"
            return f"logged in (V{d['version']}, {d['guns']} guns, CRC {crc})"
        case "login_failed":
            return f"LOGIN REFUSED (result {d['result']}): pile stopped"
        case "disconnected":
            return f"offline: {d['reason']}"
        case "heartbeat_lost":
            return f"no heartbeat answer for {d['missed']} intervals: dropping the link"
        case "model_verified":
            return None if d["matches"] else f"billing model {d['model_no']} is not the platform's: requesting it"
        case "model_received":
            return f"billing model {d['model_no']} via {d['via']}: {d['describe'].split(': ', 1)[1]}"
        case "time_synced":
            return f"clock set to {d['time']}"
        case "plugged" | "unplugged" | "fault_cleared":
            return e.kind.replace("_", " ")
        case "fault":
            return f"FAULT: {d['name']}"
        case "remote_start":
            return f"remote start {d['trade_no']}, balance {yuan_fen(d['balance_fen'])}"
        case "start_replied":
            return "start accepted" if d["result"] == 1 else f"start refused: {START_FAIL.get(d['fail_reason'])}"
        case "remote_stop":
            return "remote stop"
        case "stop_replied":
            return None if d["result"] == 1 else f"stop refused: {STOP_FAIL.get(d['fail_reason'])}"
        case "card_swiped":
            return f"card {d['card']} swiped"
        case "card_accepted":
            return f"card accepted: {d['trade_no']}, balance {yuan_fen(d['balance_fen'])}"
        case "card_refused":
            why = d.get("why") or CARD_FAIL.get(d.get("fail_reason") or 0, f"reason {d.get('fail_reason')}")
            return f"card refused: {why}"
        case "charging_started":
            return (f"charging {d['trade_no']}: a {d['capacity_kwh']} kWh car at {d['start_soc']}% "
                    f"(limit {yuan_fen(d['balance_fen'])})")
        case "realtime":
            return (f"{d['power_w'] / 1000:6.1f} kW {d['voltage_dv'] / 10:5.1f} V {d['current_da'] / 10:5.1f} A  "
                    f"SOC {d['soc_pct']:3d}%  {kwh(d['energy'])}  {yuan_amount(d['amount'])}")
        case "charging_stopped":
            return (f"stopped ({stop_reason_name(d['stop_reason'])}): {kwh(d['energy'])}, "
                    f"{yuan_amount(d['amount'])}, SOC {d['soc_pct']}%, {d['minutes']} min")
        case "record_sent":
            return f"record {d['trade_no']} sent (try {d['attempt']}): {kwh(d['energy'])}, {yuan_amount(d['amount'])}"
        case "record_confirmed":
            return f"record {d['trade_no']} confirmed"
        case "record_rejected":
            return f"RECORD {d['trade_no']} REJECTED by the platform (invalid bill)"
        case "frame_error":
            return f"bad frame from the platform [{d['code']}] {d['reason']}: {d['hex'][:80]}"
        case "draining":
            return f"draining: no new starts, charges stopped, {d['records']} records to confirm"
        case "pending_start_dropped":
            return "draining: the start waiting for a plug is dropped"
        case "unhandled":
            return f"ignored {d['frame_type']} {d['message']}"
    return None


class Console:
    """A subscriber for :class:`~pile_link.simulator.events.EventLog` that prints readable lines."""

    def __init__(self, out: TextIO, *, progress: float = 300.0, verbose: bool = False,
                 jsonl: TextIO | None = None) -> None:
        self.out = out
        self.progress = progress
        self.verbose = verbose
        self.jsonl = jsonl
        self._last_progress: dict[tuple[str, int | None], Any] = {}

    def __call__(self, event: Event) -> None:
        if self.jsonl is not None:
            self.jsonl.write(json.dumps(self.as_json(event), default=str) + "\n")
        text = self.line(event)
        if text is not None:
            self.out.write(text + "\n")
            self.out.flush()

    @staticmethod
    def as_json(event: Event) -> dict[str, Any]:
        return {"i": event.index, "real_s": round(event.real_s, 4), "time": event.sim_time.isoformat(),
                "pile": event.pile_no, "gun": event.gun, "kind": event.kind, **event.data}

    def line(self, event: Event) -> str | None:
        if event.kind == "realtime" and not self._show_progress(event):
            return None
        text = _describe(event)
        if text is None and not self.verbose:
            return None
        who = event.pile_no + (f"-{event.gun:02d}" if event.gun else "   ")
        stamp = event.sim_time.strftime("%m-%d %H:%M:%S")
        return f"[{event.real_s:8.2f}s] {stamp} {who}  {text or event.kind}"

    def _show_progress(self, event: Event) -> bool:
        if event.data.get("status") != 3:
            return self.verbose
        key = (event.pile_no, event.gun)
        last = self._last_progress.get(key)
        if last is not None and (event.sim_time - last).total_seconds() < self.progress:
            return False
        self._last_progress[key] = event.sim_time
        return True


Printer = Callable[[Event], None]
