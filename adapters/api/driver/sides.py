"""The driver side of the API per shard: payments, identity and sessions on each shard's Ledger.

A driver belongs to one tenant (the token's, or the tenant a login or a payment callback names), and
a tenant to one shard (adapters/api/shards.py), so every driver request runs on one shard's objects,
made the first time a driver of that shard is served. A deployment of one shard has exactly one,
built at start as before.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from adapters.api.auth import TokenSigner
from adapters.api.driver.identity import DriverIdentity, DriverTokens, WeChatCode2Session
from adapters.api.driver.sessions import DriverSessions
from adapters.api.driver.starts import StartRequests
from adapters.api.shards import ApiShards, Shard
from adapters.payments.config import Channels, SecretBox
from adapters.payments.service import PaymentService, Providers

if TYPE_CHECKING:
    from adapters.api.driver.settings import DriverApiSettings


@dataclass(frozen=True)
class ShardDrivers:
    """One shard's driver objects."""

    service: PaymentService
    identity: DriverIdentity
    sessions: DriverSessions
    pool: Any  # the shard's pool (the orders view a driver's history is read from)


class DriverSides:
    """The driver objects of each shard, found by tenant."""

    def __init__(self, shards: ApiShards, driver: DriverApiSettings, signer: TokenSigner) -> None:
        self.shards, self.driver, self.signer = shards, driver, signer
        self.providers = Providers(driver.public_url, gateways=dict(driver.gateways))
        self.box = SecretBox.from_setting(driver.payment_keys)
        self._built: dict[str, ShardDrivers] = {}
        self._lock = threading.Lock()
        self.home = self.of_shard(shards.home)

    def of_shard(self, shard: Shard) -> ShardDrivers:
        built = self._built.get(shard.name)
        if built is None:
            with self._lock:
                built = self._built.get(shard.name) or self._build(shard)
                self._built[shard.name] = built
        return built

    def _build(self, shard: Shard) -> ShardDrivers:
        ledger = shard.ledger
        channels = Channels(ledger.payments, self.box)
        service = PaymentService(ledger, ledger.payments, channels, self.providers, limits=self.driver.top_up_limits)
        identity = DriverIdentity(channels, DriverTokens(self.signer), WeChatCode2Session(self.driver.wechat_api),
                                  self.providers, service.wallet_id)
        return ShardDrivers(service, identity, DriverSessions(ledger, StartRequests(shard.pool), self.driver),
                            shard.pool)

    def of(self, tenant_id: UUID) -> ShardDrivers:
        """The tenant's shard's driver objects (NotFound for a tenant on no shard)."""
        if self.shards.map.single:
            return self.home
        return self.of_shard(self.shards.of_tenant(tenant_id))
