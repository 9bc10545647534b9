"""What the gateway does with each frame a pile sends: one handler per message type, by concern.

Each handler is a coroutine ``(link, frame, msg)`` registered by decorator on :data:`routes`
(:mod:`pile_link.handlers.table`; one handler per message type, as in ``mobilityhouse/ocpp``). It gets
the connection (:class:`~pile_link.link.PileLink`, which reaches the gateway only through
:class:`~pile_link.context.LinkContext`), the frame and its decoded message; it runs after the
boundary check, and its ledger calls run in the gateway's thread pool.

    login.py        0x01 login, 0x03 heartbeat, 0x55 time sync answered
    billing.py      0x05 billing model check, 0x09 billing model request, 0x57 pushed model answered
    sessions.py     0x13 realtime data, 0x33 / 0x35 start and stop answered, 0x31 start at the pile,
                    0x1B / 0x1D / 0x21 aborts and BMS errors
    records.py      0x3B transaction record: settled, then confirmed (0x40)
    maintenance.py  0x51 / 0x91 / 0x93: work parameters, reboot and update answered

Importing this package registers every handler; the gateway gives :data:`routes` to each link.
"""

from pile_link.handlers import billing, login, maintenance, records, sessions
from pile_link.handlers.table import Handler, routes

__all__ = ["Handler", "billing", "login", "maintenance", "records", "routes", "sessions"]
