"""Payment credentials are sealed at rest: no table of the database holds them in plain text."""

from __future__ import annotations

import base64

import psycopg
import pytest

from adapters.payments.config import ChannelConfigError, Channels, SealError, SecretBox, WeChatConfig
from domain.errors import NotFound
from tests.payment_fakes import PayWorld


def _every_value(database_url: str) -> bytes:
    """Every row of every table in the database, as bytes (bytea columns raw, the rest as text)."""
    out = []
    with psycopg.connect(database_url) as conn:
        tables = conn.execute("SELECT schemaname, tablename FROM pg_tables "
                              "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')").fetchall()
        assert any(t == "payments_events" for _, t in tables)
        for schema, table in tables:
            for row in conn.execute(f'SELECT * FROM "{schema}"."{table}"'):
                for value in row:
                    out.append(value if isinstance(value, bytes | memoryview) else str(value).encode())
    return b"\n".join(bytes(v) for v in out)


def test_no_table_holds_an_app_id_secret_or_key_in_plain_text(world: PayWorld, database_url: str) -> None:
    # exercise the flows that write: top-ups, a notification, a refund
    top_up = world.service.create_top_up(world.wechat_payer(), 10_00)
    world.service.handle_notification("wechat", world.tenant_id, "wx-main",
                                      *world.wechat.payment_notification(top_up.out_trade_no))
    world.service.request_refund(world.wechat_payer(), 1_00)
    world.service.create_top_up(world.alipay_payer(), 10_00)
    dump = _every_value(database_url)
    assert top_up.out_trade_no.encode() in dump  # the dump does read the events' contents
    wx, ali = world.wechat.config(), world.alipay.config()
    secrets_in_plain = {
        "wechat app id": wx.app_id, "wechat app secret": wx.app_secret, "mch id": wx.mch_id,
        "apiv3 key": wx.apiv3_key, "merchant serial": wx.merchant_serial_no,
        "merchant key": wx.merchant_private_key.splitlines()[5], "platform key id": wx.platform_public_key_id,
        "alipay app id": ali.app_id, "alipay app key": ali.app_private_key.splitlines()[5],
        "alipay seller": ali.seller_id,
    }
    for what, secret in secrets_in_plain.items():
        for form in (secret.encode(), base64.b64encode(secret.encode())):
            assert form not in dump, f"{what} found in plain text"
    assert world.payments.channel(world.tenant_id, "wx-main").sealed.startswith("v1.")


def test_a_sealed_document_opens_only_with_its_key_and_on_its_own_channel(world: PayWorld) -> None:
    sealed = world.payments.channel(world.tenant_id, "wx-main").sealed
    other_box = SecretBox.from_setting(SecretBox.generate_setting("k1"))
    with pytest.raises(SealError):
        Channels(world.payments, other_box).open(world.tenant_id, "wx-main")
    with pytest.raises(SealError):  # bound to its tenant, channel and provider
        world.channels.box.open(sealed, f"chargeledger:payment-channel:{world.tenant_id}:ali-main:wechat")
    assert world.channels.open(world.tenant_id, "wx-main").config == world.wechat.config()


def test_rotating_the_key_keeps_old_documents_readable_and_reseals_them(world: PayWorld) -> None:
    old = world.channels.box
    old_setting_key = base64.b64encode(old._keys[old.current]).decode()
    rotated = SecretBox.from_setting(f"k2={base64.b64encode(b'r' * 32).decode()},{old.current}={old_setting_key}")
    channels = Channels(world.payments, rotated)
    assert channels.open(world.tenant_id, "wx-main").config == world.wechat.config()
    assert channels.reseal(world.tenant_id, "wx-main", "admin") is True
    assert world.payments.channel(world.tenant_id, "wx-main").sealed.startswith("v1.k2.")
    assert channels.reseal(world.tenant_id, "wx-main", "admin") is False
    only_new = SecretBox.from_setting(f"k2={base64.b64encode(b'r' * 32).decode()}")
    assert Channels(world.payments, only_new).open(world.tenant_id, "wx-main").config == world.wechat.config()


def test_a_bad_channel_configuration_is_refused_and_writes_nothing(world: PayWorld) -> None:
    bad = WeChatConfig(**{**world.wechat.config().__dict__, "apiv3_key": "short"})
    with pytest.raises(ChannelConfigError):
        world.channels.configure(world.tenant_id, "wx-two", "wechat", bad, "admin")
    with pytest.raises(ChannelConfigError):  # a WeChat config for an Alipay channel
        world.channels.configure(world.tenant_id, "ali-main", "alipay", world.wechat.config(), "admin")
    with pytest.raises(NotFound):
        world.channels.open(world.tenant_id, "wx-two")
