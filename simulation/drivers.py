"""Simulated drivers, the payment provider and an operator: the API side of the platform.

A driver starts through the driver API's own code (``adapters.api.driver.sessions.DriverSessions.start``, with
its start requests on the store), stops, tops up and asks for refunds. A request whose answer was
lost (the API process died) is sent again later with the same Idempotency-Key, as a client retries;
a payment notification the platform did not confirm is sent again by the provider, with its key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

from adapters.api.driver.sessions import DriverSessions
from adapters.api.driver.settings import DriverApiSettings
from adapters.api.driver.identity import DriverPrincipal
from domain.errors import DomainError
from domain.ledger import Ledger
from domain.start_rules import StartRules
from domain.wallet import Wallet
from simulation.world import DRIVERS, GUNS, PILES, MemoryStartRequests, World


@dataclass
class Driver:
    driver_id: str
    principal: DriverPrincipal
    wallet_id: Any
    starts: dict[str, tuple[str, int]] = field(default_factory=dict)  # key -> (pile, gun), answer not seen yet
    top_ups: dict[str, int] = field(default_factory=dict)  # key -> amount, not confirmed yet
    sessions: list[str] = field(default_factory=list)  # trade serials the driver was answered
    count: int = 0


class Api:
    """The API side: drivers' requests, the provider's notifications, the operator's adjustments."""

    def __init__(self, world: World, max_hold_fen: int) -> None:
        self.world = world
        self.requests = MemoryStartRequests(world.store)
        self.settings = DriverApiSettings(payment_keys="", public_url="",
                                          start_rules=StartRules(min_start_fen=1_00, max_hold_fen=max_hold_fen))
        self.services: dict[str, tuple[int, DriverSessions]] = {}
        self.drivers = [Driver(d, DriverPrincipal(world.tenant_id, d, "wechat", "app", d),
                               Wallet.create_id(world.tenant_id, d)) for d in DRIVERS]

    def service(self, process: str) -> DriverSessions:
        """The process's DriverSessions, made again after the process restarted."""
        generation = self.world.process(process).generation
        known = self.services.get(process)
        if known is None or known[0] != generation:
            known = self.services[process] = (generation, DriverSessions(self.world.ledger(process), self.requests,
                                                                        self.settings))
        return known[1]

    # ---- drivers ---------------------------------------------------------------------------------------
    def keyed(self, driver: Driver, retry: bool, made: dict[str, Any], prefix: str,
              choose: Callable[[], Any]) -> tuple[str, Any]:
        """A retry repeats one of the driver's earlier Idempotency-Keys with what it asked then;
        otherwise a new key and a new choice."""
        if retry and made:
            key = self.world.rng.choice(list(made))
        else:
            driver.count += 1
            key = f"{prefix}-{driver.count:04d}"
            made[key] = choose()
        return key, made[key]

    def start(self, driver: Driver, process: str, retry: bool) -> None:
        rng = self.world.rng
        key, (pile_no, gun_no) = self.keyed(driver, retry, driver.starts, "start",
                                            lambda: (rng.choice(PILES), rng.choice(GUNS)))
        try:
            trade_no, hold, opened = self.service(process).start(driver.principal, pile_no, gun_no, key,
                                                                 self.world.now)
        except DomainError as error:
            driver.starts.pop(key)
            self.world.log(f"{driver.driver_id} start {key} refused: {error.code}")
            return
        driver.starts.pop(key)
        if trade_no not in driver.sessions:
            driver.sessions.append(trade_no)
        self.world.log(f"{driver.driver_id} start {key} -> {trade_no} held {hold} {'new' if opened else 'again'}")

    def stop(self, driver: Driver, process: str) -> None:
        if not driver.sessions:
            return
        trade_no = self.world.rng.choice(driver.sessions[-3:])
        try:
            self.service(process).stop(driver.principal, trade_no, self.world.now)
            self.world.log(f"{driver.driver_id} stop {trade_no}")
        except DomainError as error:
            self.world.log(f"{driver.driver_id} stop {trade_no} refused: {error.code}")

    def top_up(self, driver: Driver, process: str, retry: bool) -> None:
        rng = self.world.rng
        key, amount = self.keyed(driver, retry, driver.top_ups, f"topup-{driver.driver_id}",
                                 lambda: rng.choice((5_00, 20_00, 50_00, 100_00)))
        self.wallet(process, driver, Ledger.top_up, key=key, amount=amount, provider="wechat", payment_ref=key)
        driver.top_ups.pop(key)

    def refund(self, driver: Driver, process: str) -> None:
        driver.count += 1
        amount = self.world.rng.choice((1_00, 5_00, 20_00))
        refund_id = f"refund-{driver.count:04d}"
        self.wallet(process, driver, Ledger.request_refund, key=refund_id, refund_id=refund_id, amount=amount,
                    provider="wechat")

    def refund_result(self, driver: Driver, process: str) -> None:
        """The provider's answer to a pending refund: done, or failed (the money comes back)."""
        wallet = self.world.ledger(process).wallets.get(driver.wallet_id, Wallet, "wallet", fresh=True)
        pending = [r for r, v in wallet.refunds.items() if v["state"] == "requested"]
        if not pending:
            return
        refund_id = self.world.rng.choice(pending)
        if self.world.rng.random() < 0.5:
            self.wallet(process, driver, Ledger.complete_refund, key=f"done:{refund_id}", refund_id=refund_id,
                        provider_ref=f"wx-{refund_id}")
        else:
            self.wallet(process, driver, Ledger.fail_refund, key=f"failed:{refund_id}", refund_id=refund_id,
                        reason="account closed")

    def adjust(self, driver: Driver, process: str) -> None:
        driver.count += 1
        amount = self.world.rng.choice((-3_00, -1_00, 1_00, 2_50, 10_00))
        self.wallet(process, driver, Ledger.adjust, key=f"adjust-{driver.driver_id}-{driver.count:04d}", amount=amount,
                    reason="goodwill" if amount > 0 else "correction", author="operator")

    def wallet(self, process: str, driver: Driver, use_case: Callable[..., Wallet], **kwargs: Any) -> None:
        """Run a wallet use case of the ledger (``Ledger.top_up``, ...) in ``process``."""
        command = use_case.__name__
        try:
            use_case(self.world.ledger(process), driver.wallet_id, **kwargs)
            self.world.log(f"{driver.driver_id} {command} {kwargs.get('amount', kwargs.get('refund_id', ''))}")
        except DomainError as error:
            self.world.log(f"{driver.driver_id} {command} refused: {error.code}")

