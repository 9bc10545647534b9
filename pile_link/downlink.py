"""Frames the platform sends a pile, built from ledger data: a start (0x34), a stop (0x36), a reboot
(0x92), work parameters (0x52) and the billing model of a tariff version (0x0A, 0x58).

What a pile is owed (:mod:`pile_link.owed`) and the link's tariff push
(:meth:`pile_link.link.PileLink.push_tariff_when_idle`) build their frames here.
"""

from __future__ import annotations

from typing import Any

from pile_link.ykc import Reboot, RemoteStart, RemoteStop, TierRate, WorkParams


def billing_model(pile_no: str | None, tariff: Any) -> dict[str, Any]:
    """The YKC billing model of a tariff version: four tier rates and the 48-slot table."""
    schedule = tariff.schedule
    tiers = tuple(TierRate(p.electricity, p.service) for p in schedule.prices)  # sharp, peak, flat, valley
    return {"pile_no": pile_no, "model_no": f"{tariff.model_no:04d}", "tiers": tiers, "loss_ratio": 0,
            "slots": tuple(schedule.slots)}


def start_frame(pile_no: str, gun_no: int, trade_no: str, balance_fen: int) -> RemoteStart:
    return RemoteStart(trade_no, pile_no, f"{gun_no:02d}", "0" * 16, bytes(8), balance_fen)


def stop_frame(pile_no: str, gun_no: int) -> RemoteStop:
    return RemoteStop(pile_no, f"{gun_no:02d}")


def reboot_frame(pile_no: str, params: dict[str, Any]) -> Reboot:
    return Reboot(pile_no, 2 if params.get("when") == "idle" else 1)


def parameters_frame(pile_no: str, params: dict[str, Any]) -> WorkParams:
    return WorkParams(pile_no, 1 if params.get("disabled") else 0, int(params.get("max_power_pct", 100)))
