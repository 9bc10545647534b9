"""The pile link's use cases: what the gateway holding a pile's TCP connection reports (login,
online and offline, gun status, billing model), and the commands it carries out to the pile.

A command to a pile (reboot, set parameters, push the tariff, read realtime data) is an event on the
pile (``CommandRequested``, its name one of :data:`domain.registry.PILE_COMMANDS`); the gateway
holding the pile sends the frame when it sees it (:func:`pile_link.owed.owed_for_command`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.errors import NotFound, PileUnavailable
from domain.registry import Pile
from domain.tariff import Tariff
from domain.use_cases.core import LedgerCore


class PileUseCases(LedgerCore):
    # ---- what the pile reports -------------------------------------------------------------------
    def pile_login(self, pile_no: str) -> Pile:
        """May this pile log in? Refuses an unknown pile (NotFound) and a disabled one (PileUnavailable)."""
        pile = self.registry.pile(pile_no)
        if not pile.enabled:
            raise PileUnavailable(f"pile {pile_no} is disabled", pile_no=pile_no)
        return pile

    def pile_connected(self, pile_no: str, at: datetime, gateway: str, protocol_version: int,
                       program_version: str) -> None:
        """A pile logged in (checked as :meth:`pile_login` does). The gateway batches these instead."""
        self.pile_login(pile_no)
        self.record_pile_changes([(pile_no, lambda pile: pile.connect(
            at=at, gateway=gateway, protocol_version=protocol_version, program_version=program_version))])

    def pile_disconnected(self, pile_no: str, at: datetime, reason: str) -> None:
        self.record_pile_changes([(pile_no, lambda pile: pile.disconnect(at=at, reason=reason))])

    def report_gun(self, pile_no: str, gun_no: int, status: str, plugged: bool, faults: dict[str, str],
                   at: datetime) -> None:
        """A gun's status and fault bits from a realtime frame; only changes become events."""
        error = self.record_pile_changes([(pile_no, lambda pile: (pile.report_faults(gun_no, faults, at),
                                                                  pile.report_gun_status(gun_no, status, plugged,
                                                                                         at)))])[0]
        if error is not None:
            raise error

    def record_pile_changes(self, changes: list[tuple[str, Callable[[Pile], Any]]]) -> list[Exception | None]:
        """Many piles' link observations (online, offline, gun status) in one transaction.

        Each change is ``(pile number, function of the pile)``; a change that raises a domain error
        is skipped and its error returned in its place (:meth:`LedgerCore.change_batch`, each change
        tried on a copy first). If the batch conflicts with another writer, each pile's changes are
        retried on their own.
        """
        wanted = list(dict.fromkeys(pile_no for pile_no, _ in changes))
        try:  # the usual case, every pile logged in and cached: all brought up to date in one query
            piles = self.registry.get_all(*[(Pile.create_id(p), Pile, "pile") for p in wanted])
            loaded = {pile.id: pile for pile in piles}
        except NotFound:
            loaded = {}  # one of them is unknown: load them one by one, refusing only its changes
        return self.change_batch(self.registry, Pile, "pile", [(Pile.create_id(p), change) for p, change in changes],
                                 loaded=loaded, on_copy_first=True)

    def billing_model_matches(self, pile_no: str, model_no: str) -> bool:
        """A pile's 0x05: is the model it holds the tariff version it should bill with now?"""
        pile = self.registry.pile(pile_no)
        tariff = self.tariff_for(pile)
        return model_no == f"{tariff.model_no:04d}" and holds_tariff(pile, tariff)

    def tariff_owed(self, pile_no: str) -> Tariff | None:
        """The tariff in force for the pile, if the billing model it last confirmed is another
        (a push it is owed); None if it holds the one in force."""
        pile = self.registry.pile(pile_no)
        tariff = self.tariff_for(pile)
        return None if holds_tariff(pile, tariff) else tariff

    def confirm_billing_model(self, pile_no: str, tariff_id: UUID, version: int, at: datetime) -> None:
        self.registry.update(Pile.create_id(pile_no), Pile, "pile",
                             lambda p: p.confirm_billing_model(tariff_id, version, at))

    def answer_pile_command(self, pile_no: str, command: str, ok: bool, detail: str, at: datetime) -> None:
        """The pile answered a command (``command``: the name it was requested under)."""
        self.registry.update(Pile.create_id(pile_no), Pile, "pile",
                             lambda p: p.answer_command(command=command, ok=ok, detail=detail, at=at))

    # ---- commands to the pile --------------------------------------------------------------------
    # ``tenant_id`` scopes each to an operator: another tenant's pile is NotFound.
    def reboot_pile(self, pile_no: str, *, author: str, at: datetime, tenant_id: UUID | None = None,
                    when: str | None = None) -> None:
        """Reboot the pile (0x92): now, or ``when="idle"``, once no gun is charging."""
        self._command_pile(pile_no, "reboot", _given(when=when), author, at, tenant_id)

    def set_pile_parameters(self, pile_no: str, *, author: str, at: datetime, tenant_id: UUID | None = None,
                            disabled: bool | None = None, max_power_pct: int | None = None) -> None:
        """Set the pile's working parameters (0x52): out of service, and its power limit in percent."""
        self._command_pile(pile_no, "set_parameters", _given(disabled=disabled, max_power_pct=max_power_pct),
                           author, at, tenant_id)

    def push_tariff(self, pile_no: str, *, author: str, at: datetime, tenant_id: UUID | None = None) -> None:
        """Send the pile the tariff in force again (0x58), once it is idle."""
        self._command_pile(pile_no, "push_tariff", {}, author, at, tenant_id)

    def read_realtime(self, pile_no: str, *, author: str, at: datetime, tenant_id: UUID | None = None,
                      gun_no: int | None = None) -> None:
        """Ask the pile for a realtime frame (0x12) of one gun, or of each."""
        self._command_pile(pile_no, "read_realtime", _given(gun_no=gun_no), author, at, tenant_id)

    def _command_pile(self, pile_no: str, command: str, params: dict[str, Any], author: str, at: datetime,
                      tenant_id: UUID | None) -> None:
        pile = self.registry.pile(pile_no)
        if tenant_id is not None and pile.tenant_id != tenant_id:
            raise NotFound(f"no pile {pile_no}", pile_no=pile_no)
        if command == "push_tariff":
            tariff = self.tariff_for(pile)
            params = {**params, "tariff_id": str(tariff.id), "version": tariff.tariff_version}
        self.registry.update(pile.id, Pile, "pile",
                             lambda p: p.request_command(command=command, params=params, at=at, author=author))


def _given(**params: Any) -> dict[str, Any]:
    """The parameters given (a stored command lists only those)."""
    return {name: value for name, value in params.items() if value is not None}


def holds_tariff(pile: Pile, tariff: Tariff) -> bool:
    """The pile's confirmed billing model is this tariff version."""
    return pile.billing_model == {"tariff_id": str(tariff.id), "version": tariff.tariff_version}
