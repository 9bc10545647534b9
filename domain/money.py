"""Units and the one rounding rule.

Energy is an integer count of 0.0001 kWh, unit prices an integer count of 0.00001 yuan/kWh (both the
YKC units), money on the ledger an integer count of fen (0.01 yuan). Energy × price is exact in units
of 1e-9 yuan ("nano-yuan"); nothing is rounded until a total is turned into fen, and that happens in
:func:`nano_to_fen` only. See docs/money.md.
"""

from __future__ import annotations

import re

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


def fixed_point_str(value: int, places: int) -> str:
    """An integer count of 10^-places units as an exact decimal string: (-1234, 2) -> '-12.34'."""
    sign = "-" if value < 0 else ""
    whole, part = divmod(abs(value), 10**places)
    return f"{sign}{whole}.{part:0{places}d}"


def fen_to_yuan_str(fen: int) -> str:
    """Fen as yuan with two decimals: 1234 -> '12.34' (the payment platforms' amount format too)."""
    return fixed_point_str(fen, 2)


PLAIN_YUAN = re.compile(r"(0|[1-9][0-9]{0,9})(\.[0-9]{1,2})?")


def yuan_str_to_fen(text: str) -> int:
    """A plain yuan amount back to fen, exactly: ASCII digits, at most two decimals, no sign, no
    exponent, no spaces ('20.5' -> 2050). Anything else is a ValueError."""
    if not isinstance(text, str) or not PLAIN_YUAN.fullmatch(text):
        raise ValueError(f"not an amount in yuan: {str(text)[:40]!r}")
    whole, _, cents = text.partition(".")
    return int(whole) * 100 + int(cents.ljust(2, "0") or 0)


def energy_to_kwh_str(energy: int) -> str:
    """0.0001 kWh units as a decimal string, e.g. 123456 -> '12.3456'."""
    return fixed_point_str(energy, 4)


def ykc_amount_to_yuan_str(amount: int) -> str:
    """A YKC amount (0.0001 yuan) as a decimal string, e.g. 123456 -> '12.3456'."""
    return fixed_point_str(amount, 4)


PLAIN_PRICE = re.compile(r"(0|[1-9][0-9]{0,4})(\.[0-9]{1,5})?")


def yuan_str_to_price(text: str) -> int:
    """A unit price in yuan/kWh back to 0.00001 yuan/kWh, exactly: ASCII digits, at most five decimals
    (the unit), no sign, no exponent, no spaces ('1.2' -> 120000). Anything else is a ValueError."""
    if not isinstance(text, str) or not PLAIN_PRICE.fullmatch(text):
        raise ValueError(f"not a price in yuan/kWh with at most 5 decimals: {str(text)[:40]!r}")
    whole, _, part = text.partition(".")
    return int(whole) * 10**5 + int(part.ljust(5, "0") or 0)


def price_to_yuan_str(price: int) -> str:
    """A unit price (0.00001 yuan/kWh) as a decimal string, e.g. 150000 -> '1.50000'."""
    return fixed_point_str(price, 5)


def apportion_fen(total_fen: int, parts_nano: list[int]) -> list[int]:
    """Split a total already rounded to fen over its exact parts (1e-9 yuan each): the shares add up
    to ``total_fen`` exactly and each is within one fen of its part.

    Not a second rounding of any amount: the total stays what :func:`nano_to_fen` made it; this only
    says how much of it each part (a tier's electricity, say) carries, for a statement that lists
    parts beside the total. Each share starts at its part's fen floor; the fen left over go one each
    to the parts with the largest remainders (the earliest part on a tie).
    """
    if any(p < 0 for p in parts_nano) or total_fen < 0:
        raise ValueError("amounts to apportion are never negative")
    shares = [p // NANO_PER_FEN for p in parts_nano]
    left = total_fen - sum(shares)
    if not 0 <= left <= len(parts_nano):
        raise ValueError(f"a total of {total_fen} fen is not the rounded sum of these parts")
    by_remainder = sorted(range(len(parts_nano)), key=lambda i: (-(parts_nano[i] % NANO_PER_FEN), i))
    for i in by_remainder[:left]:
        shares[i] += 1
    return shares
