"""The door's handlers, one module per group of interfaces, all on ``table.handlers``.

Importing this package registers every handler (the door imports it). To serve a new interface,
add a module here with ``@handlers.handles("<interface>")`` and import it below; the pipeline,
the door and the HTTP route stay as they are.

* ``token``: ``query_token``, both roles;
* ``stations``, ``charging``: we as infrastructure operator (our piles, a customer platform's users);
* ``notifications``: we as customer platform (an infrastructure operator's pushes, recorded);
* ``regulation``: we on a regulator's side (``notification_stationInfo``, recorded).
"""

from adapters.interconnect.handlers import charging, notifications, regulation, stations, token  # noqa: F401 (registers)
from adapters.interconnect.handlers.table import handlers

__all__ = ["handlers"]
