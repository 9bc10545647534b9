"""We on a regulator's side of a link, what an infrastructure operator pushes a regulator beyond the
customer platform's interfaces: ``notification_stationInfo`` (T/CEC 102-2021), a station's catalogue entry,
kept as it arrived (``tcec_received``) and acknowledged with ``Status`` 0.

Every arrival is its own row, as a connector status is (``notifications.py``): a station may change back
and forth, and the daily re-push of an unchanged entry is news too (the regulator learns the station is
still there). The statuses and orders a regulator receives are the customer platform's interfaces and
are served by ``notifications.py``.
"""

from __future__ import annotations

import uuid

from adapters.interconnect.handlers.table import handlers
from adapters.interconnect.tcec import wire
from adapters.interconnect.tcec.models.codes import NotificationStatus
from adapters.interconnect.tcec.models.stations import StationInfoAck, StationInfoNotification
from adapters.interconnect.tcec.routing import Call


@handlers.handles("notification_stationInfo")
def station_info(call: Call) -> StationInfoAck:
    request: StationInfoNotification = call.request
    call.services.store.received.record(call.peer.peer_id, call.interface.name,
                                        f"{request.StationInfo.StationID}:{uuid.uuid4().hex}",
                                        wire.dumps(request.to_wire()), call.now)
    return StationInfoAck(Status=NotificationStatus.RECEIVED)
