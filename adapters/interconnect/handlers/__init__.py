"""The door's handlers, one module per group of interfaces, all on ``table.handlers``.

Importing this package registers every handler (the door imports it). To serve a new interface,
add a module here with ``@handlers.handles("<interface>")`` and import it below; the pipeline,
the door and the HTTP route stay as they are.
"""

from adapters.interconnect.handlers import token  # noqa: F401  (registers query_token)
from adapters.interconnect.handlers.table import handlers

__all__ = ["handlers"]
