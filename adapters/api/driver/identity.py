"""Driver identity: mini-program login with WeChat or Alipay, and our own signed, expiring session token.

* WeChat: the mini-program's ``wx.login`` code goes to WeChat's code-to-session call with the
  channel's app id and app secret; the openid that comes back identifies the driver in that app.
  The call is an injectable adapter (:class:`WeChatCodeExchange`), so tests play WeChat on loopback.
* Alipay: ``my.getAuthCode``'s auth code goes to ``alipay.system.oauth.token`` through the SDK.

The driver id is ``<provider>:<channel>:<openid or user id>`` (an openid is per app, so the channel
is part of it); the wallet is per (tenant, driver id). The token is the one ``adapters.api.auth`` signs
for operators (HS256 JWT, key ``CHARGELEDGER_TOKEN_KEY``, expiring), with ``role: "driver"``, the
tenant, and the driver id as subject. The tenant and the driver of every driver request come from
this token only, never from a header, a parameter or a body; the operator API refuses driver tokens
and the driver API refuses operator tokens.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Protocol
from uuid import UUID

import httpx
from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from adapters.api.auth import DRIVER, AuthError, Principal, TokenSigner
from adapters.payments.base import ProviderError
from adapters.payments.config import Channels, WeChatConfig
from domain.errors import DomainError, NotFound


class LoginRefused(DomainError):
    code = "login_refused"


@dataclass(frozen=True)
class DriverPrincipal:
    """A driver as a verified token says."""

    tenant_id: UUID
    driver_id: str  # "<provider>:<channel>:<payer>"
    provider: str
    channel: str
    payer: str  # openid / Alipay user: what the payment platform knows the driver as


def driver_id_of(provider: str, channel: str, payer: str) -> str:
    return f"{provider}:{channel}:{payer}"


class DriverTokens:
    """Driver tokens through the operator API's signer (``adapters.api.auth``), with role ``driver``.

    The subject is the driver id, from which the channel and the payer id are read back (channel
    names cannot hold ``:``), so the token needs no claims beyond the signer's own.
    """

    def __init__(self, signer: TokenSigner) -> None:
        self.signer = signer

    def issue(self, tenant_id: UUID, driver_id: str, now: datetime | None = None) -> tuple[str, datetime]:
        return self.signer.issue(Principal(driver_id, DRIVER, tenant_id), now)

    def verify(self, token: str) -> DriverPrincipal:
        """The driver of a valid, unexpired driver token; raises ``AuthError`` (401/403) otherwise."""
        principal = self.signer.verify(token, (DRIVER,))
        provider, _, rest = principal.subject.partition(":")
        channel, _, payer = rest.partition(":")
        if provider not in ("wechat", "alipay") or not channel or not payer or principal.tenant_id is None:
            raise AuthError("invalid_token", "not a driver token")
        return DriverPrincipal(principal.tenant_id, principal.subject, provider, channel, payer)


SECRET_IN_URL = re.compile(r"((?:app_?)?secret=)[^&\s\"']+", re.IGNORECASE)


class RedactSecrets(logging.Filter):
    """Rewrites a log record so no ``secret=...`` query value survives in it (WeChat's code2session takes
    the app secret in its URL, and httpx logs every request's URL at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if SECRET_IN_URL.search(message):
            record.msg, record.args = SECRET_IN_URL.sub(r"\1[redacted]", message), None
        return True


HTTP_CLIENT_LOGGERS = ("httpx", "httpcore", "httpcore.connection", "httpcore.http11", "httpcore.http2",
                       "httpcore.proxy")


def redact_http_client_logs() -> None:
    """Install :class:`RedactSecrets` on the HTTP client's loggers (a logger's filters see only its own
    records, so each one that logs is named). Idempotent."""
    for name in HTTP_CLIENT_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())


class WeChatCodeExchange(Protocol):
    def __call__(self, app_id: str, app_secret: str, code: str) -> str:
        """The openid for a ``wx.login`` code; raises LoginRefused if WeChat refuses it."""
        ...


class WeChatCode2Session:
    """WeChat's ``GET /sns/jscode2session`` over HTTPS (the session_key is not kept: we do not decrypt
    user data)."""

    def __init__(self, base_url: str = "https://api.weixin.qq.com", *, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        redact_http_client_logs()

    def __call__(self, app_id: str, app_secret: str, code: str) -> str:
        try:
            response = httpx.get(f"{self.base_url}/sns/jscode2session", timeout=self.timeout,
                                 params={"appid": app_id, "secret": app_secret, "js_code": code,
                                         "grant_type": "authorization_code"})
            data = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise ProviderError(f"WeChat code2session failed: {error}") from None
        if data.get("errcode") or not data.get("openid"):
            raise LoginRefused(f"WeChat refused the login code: {data.get('errcode')} {data.get('errmsg', '')}".strip(),
                               errcode=data.get("errcode"))
        return str(data["openid"])


@dataclass(frozen=True)
class Login:
    token: str
    expires_at: datetime
    principal: DriverPrincipal


class DriverIdentity:
    """Logs drivers in through a tenant's channel and issues their token; opens their wallet."""

    def __init__(self, channels: Channels, tokens: DriverTokens, code2session: WeChatCodeExchange,
                 providers: Callable[[Any], Any], open_wallet: Callable[[UUID, str], Any]) -> None:
        self.channels = channels
        self.tokens = tokens
        self.code2session = code2session
        self.providers = providers  # the Alipay adapter answers auth codes
        self.open_wallet = open_wallet

    def login(self, provider: str, tenant_id: UUID, channel_name: str, code: str) -> Login:
        if not isinstance(code, str) or not code.strip() or len(code) > 256:
            raise LoginRefused("a login code is required")
        try:
            channel = self.channels.open(tenant_id, channel_name)
        except NotFound:
            raise LoginRefused(f"no {provider} mini-program {channel_name} at this operator") from None
        if channel.provider != provider or not channel.enabled:
            raise LoginRefused(f"no {provider} mini-program {channel_name} at this operator")
        if provider == "wechat":
            config: WeChatConfig = channel.config
            payer = self.code2session(config.app_id, config.app_secret, code)
        else:
            try:
                payer = self.providers(channel).user_for(code)
            except ProviderError as error:
                raise LoginRefused(f"Alipay refused the auth code: {error.message}") from None
        driver_id = driver_id_of(provider, channel_name, payer)
        self.open_wallet(tenant_id, driver_id)
        token, expires_at = self.tokens.issue(tenant_id, driver_id)
        return Login(token, expires_at, DriverPrincipal(tenant_id, driver_id, provider, channel_name, payer))


DRIVER_BEARER = HTTPBearer(auto_error=False, scheme_name="DriverBearer",
                           description="a driver token from POST /driver/login/{provider}/{tenant}/{app}")


def bearer_driver(identity: DriverIdentity) -> Callable[..., DriverPrincipal]:
    """The FastAPI dependency of every driver-facing route: the driver a Bearer token names."""

    def driver(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(DRIVER_BEARER)]
               ) -> DriverPrincipal:
        if credentials is None or not credentials.credentials.strip():
            raise AuthError("missing_token", "send Authorization: Bearer <driver token>")
        return identity.tokens.verify(credentials.credentials.strip())

    return driver
