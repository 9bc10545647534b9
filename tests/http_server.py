"""A real HTTP server for tests: the app served by uvicorn with the settings `chargeledger api` uses, in a
thread, on a free loopback port (the e2e API tests and the browser tests)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from adapters.api.guards import ServerSettings, server_config

DEADLINE = 30.0


@contextmanager
def serving(app: Any, settings: ServerSettings) -> Iterator[int]:
    """Serve ``app`` with the settings `chargeledger api` uses, in a thread; yield the port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(server_config(app, settings, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + DEADLINE
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=DEADLINE)
