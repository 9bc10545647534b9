"""A YKC 1.5/1.6 pile simulator: N piles × M guns over real TCP, real frames, seeded, sped up.

Library (end-to-end tests drive it)::

    from pile_link.simulator import Fleet, PileSpec, PileConfig
    async with Fleet(host, port, [PileSpec("32010600019236", guns=2, crc_order="be")], seed=1, speed=60) as fleet:
        pile = fleet.pile("32010600019236")
        pile.plug(1)
        event = await fleet.events.wait_for("record_confirmed", pile=pile.pile_no, timeout=30)

Load mode (``pile_link.simulator.load``): thousands of connections that only log in and send
heartbeats / realtime frames, measuring reply latency. CLI: ``pile_link.simulator.cli``.
See docs/simulator.md.
"""

from pile_link.simulator.battery import ChargeCurve, Vehicle
from pile_link.simulator.billing import BillingModel, TierMeter
from pile_link.simulator.clock import SimClock
from pile_link.simulator.events import Event, EventLog
from pile_link.simulator.fleet import Fleet, generate_specs, pile_numbers
from pile_link.simulator.pile import SimPile
from pile_link.simulator.spec import PileConfig, PileSpec, SimulatorError

__all__ = [
    "BillingModel",
    "ChargeCurve",
    "Event",
    "EventLog",
    "Fleet",
    "PileConfig",
    "PileSpec",
    "SimClock",
    "SimPile",
    "SimulatorError",
    "TierMeter",
    "Vehicle",
    "generate_specs",
    "pile_numbers",
]
