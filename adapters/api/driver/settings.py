"""Settings of the driver API: the payment channels' sealing keys, the public URL, and what a start
needs and holds per tenant (``CHARGELEDGER_PAYMENT_KEYS``, ``CHARGELEDGER_PUBLIC_URL``,
``CHARGELEDGER_MIN_START_FEN``, ``CHARGELEDGER_MAX_HOLD_FEN``, ``CHARGELEDGER_TENANT_START_RULES``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from uuid import UUID

from adapters.payments.service import TopUpLimits
from domain.start_rules import StartRules


@dataclass(frozen=True)
class DriverApiSettings:
    """Settings of the driver side: payment channels' sealing keys, public URL, start rules.

    ``gateways`` and ``wechat_api`` point the payment SDKs and WeChat's code2session elsewhere; only
    the offline tests use them, to play the platforms on loopback.
    """

    payment_keys: str  # CHARGELEDGER_PAYMENT_KEYS: kid=base64key[,...] (docs/payments.md)
    public_url: str  # CHARGELEDGER_PUBLIC_URL: the base of the notify URLs given to the platforms
    start_rules: StartRules = field(default_factory=StartRules)
    tenant_rules: Mapping[UUID, StartRules] = field(default_factory=dict)
    stream_poll: float = 1.0  # seconds between looks at a watched session
    stream_keepalive: float = 15.0  # seconds of silence before a keep-alive comment
    gateways: Mapping[str, str] = field(default_factory=dict)
    wechat_api: str = "https://api.weixin.qq.com"
    top_up_limits: TopUpLimits = field(default_factory=TopUpLimits)
    max_streams_per_driver: int = 3  # live streams one driver may hold open at once, per API process

    def rules(self, tenant_id: UUID) -> StartRules:
        return self.tenant_rules.get(tenant_id, self.start_rules)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "DriverApiSettings | None":
        """None when ``CHARGELEDGER_PAYMENT_KEYS`` is unset (the API then serves operators only).

        ``CHARGELEDGER_MIN_START_FEN`` / ``CHARGELEDGER_MAX_HOLD_FEN`` set the defaults;
        ``CHARGELEDGER_TENANT_START_RULES="<tenant uuid>=<min>/<max>,..."`` overrides per tenant.
        """
        keys = environ.get("CHARGELEDGER_PAYMENT_KEYS", "")
        if not keys:
            return None
        public_url = environ.get("CHARGELEDGER_PUBLIC_URL", "")
        if not public_url.startswith("https://") and not public_url.startswith("http://"):
            raise ValueError("set CHARGELEDGER_PUBLIC_URL to the API's public base URL (https://...)")
        default = StartRules(int(environ.get("CHARGELEDGER_MIN_START_FEN", 5_00)),
                             int(environ.get("CHARGELEDGER_MAX_HOLD_FEN", 200_00)))
        tenants: dict[UUID, StartRules] = {}
        for part in (p.strip() for p in environ.get("CHARGELEDGER_TENANT_START_RULES", "").split(",") if p.strip()):
            tenant, _, limits = part.partition("=")
            low, _, high = limits.partition("/")
            tenants[UUID(tenant.strip())] = StartRules(int(low), int(high or default.max_hold_fen))
        return cls(keys, public_url, default, tenants)

