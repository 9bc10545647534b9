"""What a start holds on the driver's wallet: one rule for every kind of start.

A start holds the wallet's whole available balance, at most ``max_hold_fen``, and is refused
(:class:`InsufficientFunds`) below ``min_start_fen``. A driver's start from the app uses the
tenant's rules (default: 5.00 yuan to start, at most 200.00 held; docs/driver-api.md); a start by
card or VIN at the pile uses the gateway's (anything above zero, at most its maximum card hold).
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.errors import InsufficientFunds
from domain.money import fen_to_yuan_str


@dataclass(frozen=True)
class StartRules:
    """What a start needs and holds. Defaults: 5.00 yuan to start, at most 200.00 held."""

    min_start_fen: int = 5_00
    max_hold_fen: int = 200_00

    def __post_init__(self) -> None:
        if not 1 <= self.min_start_fen <= self.max_hold_fen:
            raise ValueError("start rules need 1 <= min_start_fen <= max_hold_fen")

    def hold_for(self, available: int) -> int:
        """What a start holds on a wallet with ``available`` fen; InsufficientFunds below the minimum."""
        if available < self.min_start_fen:
            raise InsufficientFunds(f"starting needs at least {fen_to_yuan_str(self.min_start_fen)} yuan "
                                    f"available; the wallet has {fen_to_yuan_str(available)}",
                                    available_fen=available, min_start_fen=self.min_start_fen)
        return min(available, self.max_hold_fen)


def card_start_rules(max_hold_fen: int) -> StartRules:
    """A start by card or VIN at the pile: any balance above zero, at most ``max_hold_fen`` held."""
    return StartRules(min_start_fen=1, max_hold_fen=max_hold_fen)
