"""Per-tenant payment channels: each mini-program's app id, secrets and merchant keys, sealed at rest.

A tenant can run several mini-programs (a WeChat one, an Alipay one, a second brand...). Each is a
:class:`~domain.payment.PaymentChannel` named by us (the name appears in notification URLs and in
driver tokens); everything the platforms issued is one JSON document sealed with AES-256-GCM under
a key from the settings (``CHARGELEDGER_PAYMENT_KEYS``), never written in plain text to the event
store or any table. The associated data binds a sealed document to its tenant, channel and
provider, so a ciphertext copied onto another channel does not open.

Key rotation: the setting holds ``kid=base64key`` pairs, the first one sealing new documents; every
sealed document names its key id, so old documents open until they are re-sealed
(:meth:`Channels.reseal`).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import asdict, dataclass, fields
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domain.errors import DomainError, NotFound
from domain.payment import PaymentChannel, Payments

KEYS_SETTING = "CHARGELEDGER_PAYMENT_KEYS"
_FORMAT = "v1"


class ChannelConfigError(DomainError):
    code = "payment_channel_invalid"


class SealError(DomainError):
    code = "payment_secret_unreadable"


class SecretBox:
    """AES-256-GCM with key ids: ``v1.<kid>.<base64(nonce || ciphertext)>``."""

    def __init__(self, keys: dict[str, bytes], current: str) -> None:
        for kid, key in keys.items():
            if len(key) != 32 or "." in kid or not kid:
                raise ValueError(f"payment key {kid!r} must be 32 bytes with a name without dots")
        if current not in keys:
            raise ValueError(f"current key {current!r} is not among the keys")
        self._keys = dict(keys)
        self.current = current

    @classmethod
    def from_setting(cls, value: str) -> SecretBox:
        """``kid=base64key[,kid=base64key...]``; the first key seals, every key opens."""
        keys: dict[str, bytes] = {}
        for part in (p.strip() for p in value.split(",") if p.strip()):
            kid, _, b64 = part.partition("=")
            keys[kid.strip()] = base64.b64decode(b64.strip() + "=" * (-len(b64.strip()) % 4))
        if not keys:
            raise ValueError(f"{KEYS_SETTING} holds no key")
        return cls(keys, next(iter(keys)))

    @classmethod
    def from_env(cls) -> SecretBox:
        value = os.environ.get(KEYS_SETTING)
        if not value:
            raise ValueError(f"set {KEYS_SETTING} (kid=base64 of 32 random bytes) to store payment credentials")
        return cls.from_setting(value)

    @staticmethod
    def generate_setting(kid: str = "k1") -> str:
        return f"{kid}={base64.b64encode(secrets.token_bytes(32)).decode()}"

    def seal(self, plaintext: bytes, context: str) -> str:
        nonce = secrets.token_bytes(12)
        ct = AESGCM(self._keys[self.current]).encrypt(nonce, plaintext, context.encode())
        return f"{_FORMAT}.{self.current}.{base64.b64encode(nonce + ct).decode()}"

    def open(self, sealed: str, context: str) -> bytes:
        try:
            fmt, kid, b64 = sealed.split(".", 2)
            raw = base64.b64decode(b64)
            if fmt != _FORMAT:
                raise ValueError(fmt)
            return AESGCM(self._keys[kid]).decrypt(raw[:12], raw[12:], context.encode())
        except Exception:  # unknown key id, tampered text, wrong context: all one answer
            raise SealError("a sealed payment credential could not be opened (wrong key or tampered)") from None

    def key_id(self, sealed: str) -> str:
        return sealed.split(".", 2)[1]


@dataclass(frozen=True)
class WeChatConfig:
    """A WeChat mini-program and its WeChat Pay (APIv3) merchant account, in platform public-key mode."""

    app_id: str
    app_secret: str  # for code2session (login)
    mch_id: str
    merchant_private_key: str  # PEM, PKCS#8
    merchant_serial_no: str
    apiv3_key: str  # 32 characters
    platform_public_key: str  # PEM, SPKI ("微信支付公钥")
    platform_public_key_id: str  # "PUB_KEY_ID_..."

    def validate(self) -> None:
        for f in fields(self):
            if not getattr(self, f.name):
                raise ChannelConfigError(f"WeChat channel needs {f.name}")
        if len(self.apiv3_key.encode()) != 32:
            raise ChannelConfigError("the WeChat Pay APIv3 key is 32 characters")
        if "-----BEGIN PRIVATE KEY-----" not in self.merchant_private_key:
            raise ChannelConfigError("merchant_private_key must be PEM PKCS#8 (BEGIN PRIVATE KEY), as the SDK expects")
        _check_pem(self.merchant_private_key, private=True, what="merchant_private_key")
        _check_pem(self.platform_public_key, private=False, what="platform_public_key")


@dataclass(frozen=True)
class AlipayConfig:
    """An Alipay mini-program (open platform app) in public-key mode (RSA2)."""

    app_id: str
    app_private_key: str  # PEM (PKCS#1 or PKCS#8)
    alipay_public_key: str  # PEM (SPKI)
    seller_id: str = ""  # the merchant's 2088... PID; checked on notifications when set

    def validate(self) -> None:
        for name in ("app_id", "app_private_key", "alipay_public_key"):
            if not getattr(self, name):
                raise ChannelConfigError(f"Alipay channel needs {name}")
        for name in ("app_private_key", "alipay_public_key"):
            if "-----BEGIN" not in getattr(self, name):
                raise ChannelConfigError(f"{name} must be PEM with its header lines (wrap the console's Base64)")
        _check_pem(self.app_private_key, private=True, what="app_private_key")
        _check_pem(self.alipay_public_key, private=False, what="alipay_public_key")


def _check_pem(pem: str, *, private: bool, what: str) -> None:
    try:
        if private:
            serialization.load_pem_private_key(pem.encode(), password=None)
        else:
            serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        raise ChannelConfigError(f"{what} is not a readable PEM {'private' if private else 'public'} key") from None


ChannelConfig = WeChatConfig | AlipayConfig
_KINDS: dict[str, type] = {"wechat": WeChatConfig, "alipay": AlipayConfig}


@dataclass(frozen=True)
class Channel:
    """A channel opened for use: who it belongs to and its credentials in memory only."""

    tenant_id: UUID
    name: str
    provider: str
    config: Any  # WeChatConfig | AlipayConfig
    enabled: bool


def _context(tenant_id: UUID, name: str, provider: str) -> str:
    return f"chargeledger:payment-channel:{tenant_id}:{name}:{provider}"


class Channels:
    """Configure and open payment channels; the only place credentials are sealed or opened."""

    def __init__(self, payments: Payments, box: SecretBox) -> None:
        self.payments = payments
        self.box = box

    def _seal(self, tenant_id: UUID, name: str, provider: str, config: Any) -> str:
        if not isinstance(config, _KINDS[provider]):
            raise ChannelConfigError(f"a {provider} channel takes a {_KINDS[provider].__name__}")
        config.validate()
        return self.box.seal(json.dumps(asdict(config)).encode(), _context(tenant_id, name, provider))

    def configure(self, tenant_id: UUID, name: str, provider: str, config: Any, author: str) -> None:
        """Create a channel, or replace its credentials (a new event; the old sealed text stays sealed)."""
        if provider not in _KINDS:
            raise ChannelConfigError(f"unknown payment provider {provider!r}")
        sealed = self._seal(tenant_id, name, provider, config)
        channel_id = PaymentChannel.create_id(tenant_id, name)
        if channel_id in self.payments.repository:
            def change(channel: PaymentChannel) -> None:
                if channel.provider != provider:
                    raise ChannelConfigError(f"channel {name} is a {channel.provider} channel")
                channel.reconfigure(sealed=sealed, author=author)

            self.payments.update(channel_id, PaymentChannel, "payment channel", change)
        else:
            self.payments.create(PaymentChannel.configure(tenant_id, name, provider, sealed, author), "payment channel")

    def open(self, tenant_id: UUID, name: str) -> Channel:
        try:
            channel = self.payments.channel(tenant_id, name)
        except NotFound:
            raise NotFound(f"no payment channel {name}", channel=name) from None
        raw = self.box.open(channel.sealed, _context(channel.tenant_id, channel.name, channel.provider))
        config = _KINDS[channel.provider](**json.loads(raw))
        return Channel(channel.tenant_id, channel.name, channel.provider, config, channel.enabled)

    def reseal(self, tenant_id: UUID, name: str, author: str) -> bool:
        """Re-seal a channel under the current key (after a rotation). False if it already was."""
        channel = self.payments.channel(tenant_id, name)
        if self.box.key_id(channel.sealed) == self.box.current:
            return False
        opened = self.open(tenant_id, name)
        self.configure(tenant_id, name, opened.provider, opened.config, author)
        return True
