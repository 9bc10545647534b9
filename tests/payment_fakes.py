"""The payment platforms the tests play offline (``simulation/payment_platforms.py``: WeChat Pay and
Alipay on loopback, keys generated per run, so the real SDKs' code runs), and the world most payment
tests start from: :func:`build_pay_world` sets up a tenant with one mini-program on each fake and the
services over them.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from adapters.api.auth import AuthSettings, TokenSigner
from adapters.api.driver.identity import DriverIdentity, DriverTokens, WeChatCode2Session
from adapters.payments.config import Channels, SecretBox
from adapters.payments.service import Payer, PaymentService, Providers
from domain.ledger import Ledger
from domain.payment import Payments
from simulation.payment_platforms import FakeAlipay, FakeWeChat, KeyPair

__all__ = ["FakeAlipay", "FakeWeChat", "KeyPair", "PayWorld", "build_pay_world"]


@dataclass
class PayWorld:
    ledger: Ledger
    payments: Payments
    channels: Channels
    service: PaymentService
    identity: DriverIdentity
    tokens: DriverTokens
    wechat: FakeWeChat
    alipay: FakeAlipay
    tenant_id: UUID

    def wechat_payer(self, openid: str = "o-driver-1") -> Payer:
        return Payer(self.tenant_id, f"wechat:wx-main:{openid}", "wx-main", openid)

    def alipay_payer(self, user: str = "2088000000000001") -> Payer:
        return Payer(self.tenant_id, f"alipay:ali-main:{user}", "ali-main", user)

    def close(self) -> None:
        self.wechat.close()
        self.alipay.close()


def build_pay_world(ledger: Ledger, env: dict[str, str], box: SecretBox | None = None) -> PayWorld:
    wechat, alipay = FakeWeChat(), FakeAlipay()
    payments = ledger.payments  # the Ledger's own, so the relay and the auditor see its events
    channels = Channels(payments, box or SecretBox.from_setting(SecretBox.generate_setting()))
    tenant_id = ledger.create_tenant("Pay Operator", "admin")
    channels.configure(tenant_id, "wx-main", "wechat", wechat.config(), "admin")
    channels.configure(tenant_id, "ali-main", "alipay", alipay.config(), "admin")
    providers = Providers("https://charge.example.com", gateways={"wechat": wechat.url, "alipay": alipay.gateway})
    service = PaymentService(ledger, payments, channels, providers)
    tokens = DriverTokens(TokenSigner(AuthSettings.generate()))
    identity = DriverIdentity(channels, tokens, WeChatCode2Session(wechat.url), providers,
                              lambda tenant, driver: service.wallet_id(tenant, driver))
    return PayWorld(ledger, payments, channels, service, identity, tokens, wechat, alipay, tenant_id)
