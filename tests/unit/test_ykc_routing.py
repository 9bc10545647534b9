"""The one handler registry both ends of the YKC link use (pile_link/ykc/routing.py)."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest

import pile_link
from pile_link.handlers import routes as gateway_routes
from pile_link.simulator import handlers
from pile_link.ykc import (
    BillingModelReply,
    BillingModelSet,
    BillingModelVerifyAck,
    Heartbeat,
    HeartbeatAck,
    LoginAck,
    Message,
    ReadRealtime,
    Reboot,
    RemoteStart,
    RemoteStop,
    StartAuthReply,
    TimeSync,
    TransactionConfirm,
    WorkParams,
)
from pile_link.ykc.routing import Routes


def test_a_side_takes_only_what_it_receives() -> None:
    platform: Routes = Routes("platform")
    with pytest.raises(ValueError, match="sent by the platform"):
        platform.handles(HeartbeatAck)
    pile: Routes = Routes("pile")
    with pytest.raises(ValueError, match="sent by piles"):
        pile.handles(Heartbeat)


def test_one_handler_per_message_and_lookup_by_the_message() -> None:
    routes: Routes = Routes("platform")

    @routes.handles(Heartbeat)
    def first(*_: object) -> None: ...

    with pytest.raises(ValueError, match="already has a handler.*first"):
        routes.handles(Heartbeat)
    msg = Heartbeat(pile_no="32010200000001", gun_no="01", gun_status=0)
    assert routes.get(msg) is first and Heartbeat in routes and len(routes) == 1
    assert routes.get(HeartbeatAck(pile_no="32010200000001", gun_no="01")) is None


def test_the_gateway_link_handles_the_frames_piles_send() -> None:
    names = {cls.__name__ for cls in gateway_routes}
    assert {"Login", "Heartbeat", "RealtimeData", "TransactionRecord", "RemoteStartReply", "StartRequest"} <= names
    assert all(cls.TYPE % 2 == 1 for cls in gateway_routes)


def test_the_simulated_pile_handles_what_the_gateway_sends() -> None:
    """The simulator's table takes only downlink frames and covers every frame the gateway sends a
    pile unasked or as an answer, except the answers a simulated pile waits for itself (its login,
    model check and card start) and the two commands it does not simulate (0x92 reboot, 0x52 work
    parameters: logged as unhandled)."""
    sim = set(handlers.routes)
    assert sim and all(cls.TYPE % 2 == 0 for cls in sim)
    assert {RemoteStart, RemoteStop, BillingModelSet, TransactionConfirm, HeartbeatAck, TimeSync, ReadRealtime,
            BillingModelReply} <= sim
    waited_for = {LoginAck, BillingModelVerifyAck, StartAuthReply}  # answers to the pile's own requests
    not_simulated = {Reboot, WorkParams}
    assert not sim & (waited_for | not_simulated)
    gateway_sends = {value for module in gateway_modules() for value in vars(module).values()
                     if isinstance(value, type) and issubclass(value, Message) and value is not Message
                     and value.TYPE % 2 == 0}
    assert gateway_sends >= {RemoteStart, RemoteStop, BillingModelSet, TransactionConfirm, HeartbeatAck}
    assert gateway_sends <= sim | waited_for | not_simulated, "a frame the gateway sends that no simulated pile handles"


def gateway_modules() -> list[ModuleType]:
    """Every module of the YKC gateway side (pile_link, less the codec and the simulator)."""
    names = [info.name for info in pkgutil.walk_packages(pile_link.__path__, "pile_link.")
             if not info.name.startswith(("pile_link.ykc", "pile_link.simulator"))]
    return [importlib.import_module(name) for name in names]
