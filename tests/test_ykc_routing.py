"""The one handler registry both ends of the YKC link use (pile_link/ykc/routing.py)."""

from __future__ import annotations

import pytest

from pile_link import link
from pile_link.ykc import Heartbeat, HeartbeatAck
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
    names = {cls.__name__ for cls in link.routes}
    assert {"Login", "Heartbeat", "RealtimeData", "TransactionRecord", "RemoteStartReply", "StartRequest"} <= names
    assert all(cls.TYPE % 2 == 1 for cls in link.routes)
