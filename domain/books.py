"""The books: account balances and the trial balance, from wallet events alone."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from domain.wallet import posting_sets_of


@dataclass
class Books:
    accounts: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # debit > 0
    posting_sets: int = 0
    unbalanced: list[Any] = field(default_factory=list)

    def post(self, event: Any) -> None:
        for postings in posting_sets_of(event):
            self.posting_sets += 1
            if sum(amount for _, amount in postings) != 0:
                self.unbalanced.append(event)
            for account, amount in postings:
                # wallet-local accounts are summed over all wallets
                self.accounts[account] += amount

    @property
    def trial_balance(self) -> int:
        """Debits minus credits over every account: zero when the books balance."""
        return sum(self.accounts.values())

    @property
    def balanced(self) -> bool:
        return self.trial_balance == 0 and not self.unbalanced


def books_of(events: Iterable[Any]) -> Books:
    books = Books()
    for event in events:
        books.post(event)
    return books
