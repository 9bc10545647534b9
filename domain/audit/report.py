"""The audit's report: what was replayed, the accounts, the totals, every check and each difference."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CHECKS = (
    "posting_sets_balance", "trial_balance", "wallets_equal_live", "sessions_reprice", "sessions_match_wallets",
    "roaming_match_wallets", "sessions_match_orders", "totals_match_revenue", "holds_closed",
    "topups_match_payments", "refunds_closed",
)


@dataclass(frozen=True)
class EventRef:
    """Where an event involved in a difference is stored."""

    application: str
    notification_id: int
    originator_id: str
    version: int
    event: str

    def __str__(self) -> str:
        return f"{self.application}#{self.notification_id} {self.event} ({self.originator_id} v{self.version})"


@dataclass
class Difference:
    check: str
    message: str
    events: list[EventRef] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "message": self.message, "events": [e.__dict__ for e in self.events],
                "details": self.details}


@dataclass
class AuditReport:
    counts: dict[str, Any]
    accounts: dict[str, int]
    period: dict[str, Any]
    totals: dict[str, int]
    checks: dict[str, dict[str, Any]]
    differences: list[Difference]
    tenant: str | None = None

    @property
    def ok(self) -> bool:
        return not self.differences

    @property
    def trial_balance(self) -> int:
        return sum(self.accounts.values())

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "tenant": self.tenant, "counts": self.counts, "accounts": self.accounts,
                "trial_balance": self.trial_balance, "period": self.period, "totals": self.totals,
                "checks": self.checks, "differences": [d.as_dict() for d in self.differences]}

    def as_text(self) -> str:
        out = [f"audit replay{' of tenant ' + self.tenant if self.tenant else ''}: "
               + ("no differences" if self.ok else f"{len(self.differences)} difference(s)")]
        out.append("events: " + ", ".join(f"{app} {n}" for app, n in self.counts["events"].items())
                   + f" (total {self.counts['total_events']})")
        out.append(f"wallets {self.counts['wallets']}, sessions {self.counts['sessions']} "
                   f"({', '.join(f'{k} {v}' for k, v in sorted(self.counts['sessions_by_state'].items()))}), "
                   f"posting sets {self.counts['posting_sets']}")
        if self.counts.get("roaming_charges"):
            out.append(f"roaming charges {self.counts['roaming_charges']} ("
                       + ", ".join(f"{k} {v}" for k, v in sorted(self.counts["roaming_by_state"].items()))
                       + f"), billed by peers {self.counts['roaming_billed_fen']} fen")
        out.append("accounts (debit +, credit -, fen):")
        for account, amount in sorted(self.accounts.items()):
            out.append(f"  {account:24} {amount:>14}")
        out.append(f"  {'trial balance':24} {self.trial_balance:>14}")
        if self.period.get("from") or self.period.get("to"):
            out.append(f"period {self.period.get('from') or '-'} .. {self.period.get('to') or '-'}: "
                       f"{self.period['posting_sets']} posting sets")
            for account, (debit, credit) in sorted(self.period["movements"].items()):
                out.append(f"  {account:24} debit {debit:>12} credit {credit:>12}")
        out.append("totals: " + ", ".join(f"{k} {v}" for k, v in self.totals.items()))
        out.append("checks:")
        for name, result in self.checks.items():
            out.append(f"  {name:24} {result['status']:12} checked {result['checked']}")
        for d in self.differences:
            out.append(f"DIFFERENCE [{d.check}] {d.message}")
            for e in d.events:
                out.append(f"    {e}")
        return "\n".join(out)
