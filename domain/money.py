"""Units and the one rounding rule.

Energy is an integer count of 0.0001 kWh, unit prices an integer count of 0.00001 yuan/kWh (both the
YKC units), money on the ledger an integer count of fen (0.01 yuan). Energy × price is exact in units
of 1e-9 yuan ("nano-yuan"); nothing is rounded until a total is turned into fen, and that happens in
:func:`nano_to_fen` only. See docs/money.md.
"""

from __future__ import annotations

NANO_PER_FEN = 10**7  # 1 fen = 0.01 yuan = 10^7 × 1e-9 yuan
NANO_PER_YKC_AMOUNT = 10**5  # YKC amounts are 0.0001 yuan = 10^5 × 1e-9 yuan
YKC_AMOUNT_PER_FEN = 100


def nano_to_fen(nano: int) -> int:
    """Round an exact non-negative amount in 1e-9 yuan to fen, half up (四舍五入).

    The only rounding in the platform. Half up, not half even, because it is the rule drivers and
    Chinese commercial practice expect on a bill, and it is applied once per fee total, so it
    cannot compound.
    """
    if nano < 0:
        raise ValueError("amounts to round are never negative")
    return (nano + NANO_PER_FEN // 2) // NANO_PER_FEN


def fen_to_yuan_str(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


def energy_to_kwh_str(energy: int) -> str:
    """0.0001 kWh units as a decimal string, e.g. 123456 -> '12.3456'."""
    return f"{energy // 10000}.{energy % 10000:04d}"
