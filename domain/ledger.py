"""The service layer: every use case of the ledger, one typed method each, over the Applications.

It is what the API, the pile link, the watchdog and the demo call. It owns no state of its own.
The use cases are grouped by what they change (:mod:`domain.use_cases`): the registry and tariffs,
wallets, sessions, the pile link, our drivers' roaming charges on other operators' piles. What they
share (the Applications, retry on a version conflict, "save the batch, else one by one", the wallet
follow-through of session commands, the one registry of stored wallet command names) is
:mod:`domain.use_cases.core`. The list is in docs/architecture.md, "Use cases".
"""

from __future__ import annotations

from domain.use_cases.core import WALLET_COMMANDS, LedgerCore, PileGun
from domain.use_cases.piles import PileUseCases
from domain.use_cases.registry import RegistryUseCases
from domain.use_cases.roaming import RoamingUseCases
from domain.use_cases.sessions import SerialTaken, SessionUseCases
from domain.use_cases.wallets import WalletUseCases

__all__ = ["WALLET_COMMANDS", "Ledger", "LedgerCore", "PileGun", "SerialTaken"]


class Ledger(RegistryUseCases, WalletUseCases, SessionUseCases, PileUseCases, RoamingUseCases):
    """All the use cases (see each group's module), over one set of Applications."""
