"""Driver login through the WeChat and Alipay mini-programs, and the driver token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapters.api.auth import DRIVER, TENANT_ADMIN, AuthError, Principal
from adapters.api.driver.identity import LoginRefused
from domain.wallet import Wallet
from tests.payment_fakes import PayWorld


def test_wechat_login_exchanges_the_code_for_the_openid_and_opens_a_wallet(world: PayWorld) -> None:
    code, openid = world.wechat.login_code()
    login = world.identity.login("wechat", world.tenant_id, "wx-main", code)
    assert login.principal.driver_id == f"wechat:wx-main:{openid}" and login.principal.payer == openid
    assert world.identity.tokens.verify(login.token) == login.principal
    assert Wallet.create_id(world.tenant_id, login.principal.driver_id) in world.ledger.wallets.repository
    with pytest.raises(LoginRefused):  # a code works once
        world.identity.login("wechat", world.tenant_id, "wx-main", code)


def test_alipay_login_exchanges_the_auth_code_through_the_sdk(world: PayWorld) -> None:
    code, user = world.alipay.auth_code()
    login = world.identity.login("alipay", world.tenant_id, "ali-main", code)
    assert login.principal.driver_id == f"alipay:ali-main:{user}"
    with pytest.raises(LoginRefused):
        world.identity.login("alipay", world.tenant_id, "ali-main", "not-a-code")


def test_login_through_an_unknown_or_mismatched_channel_is_refused(world: PayWorld) -> None:
    code, _ = world.wechat.login_code()
    other = world.ledger.create_tenant("Other", "admin")
    for provider, tenant, channel in (("wechat", other, "wx-main"), ("alipay", world.tenant_id, "wx-main"),
                                      ("wechat", world.tenant_id, "nope")):
        with pytest.raises(LoginRefused):
            world.identity.login(provider, tenant, channel, code)
    with pytest.raises(LoginRefused):
        world.identity.login("wechat", world.tenant_id, "wx-main", "")


def test_an_expired_a_tampered_or_an_operator_token_is_refused(world: PayWorld) -> None:
    signer = world.identity.tokens.signer
    driver = Principal("wechat:wx-main:o1", DRIVER, world.tenant_id)
    expired, _ = signer.issue(driver, now=datetime.now(UTC) - timedelta(days=1))
    with pytest.raises(AuthError) as refused:
        world.identity.tokens.verify(expired)
    assert refused.value.code == "token_expired"
    good, _ = signer.issue(driver)
    header, payload, sig = good.split(".")
    with pytest.raises(AuthError):
        world.identity.tokens.verify(f"{header}.{payload}.{sig[:-2]}AA")
    operator, _ = signer.issue(Principal("boss", TENANT_ADMIN, world.tenant_id))
    with pytest.raises(AuthError) as refused:
        world.identity.tokens.verify(operator)
    assert refused.value.code == "wrong_token_role"
    odd, _ = signer.issue(Principal("not-a-driver-id", DRIVER, world.tenant_id))
    with pytest.raises(AuthError):
        world.identity.tokens.verify(odd)
