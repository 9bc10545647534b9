"""``chargeledger api``: the operator and driver HTTP API (FastAPI under uvicorn), and the console's pages."""

from __future__ import annotations

import argparse
import os
import sys

from adapters.cli import observability
from adapters.cli.servers import with_database


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    observability.add_arguments(parser)


@with_database
def run(args: argparse.Namespace) -> int:
    """Serve the API on ``args.database_url``; needs CHARGELEDGER_TOKEN_KEY, and for the driver side
    CHARGELEDGER_PAYMENT_KEYS and CHARGELEDGER_PUBLIC_URL (without them: operators only); with
    CHARGELEDGER_INTERCONNECT_KEYS also the T/CEC door, /evcs/v1 (docs/interconnect.md).
    Limits and timeouts from the environment (ServerSettings.from_env, docs/operations.md)."""
    import uvicorn

    from adapters.api.app import create_app
    from adapters.api.auth import AuthSettings
    from adapters.api.driver.settings import DriverApiSettings
    from adapters.api.guards import ServerSettings, server_config
    from adapters.interconnect.door import InterconnectSettings
    from adapters.interconnect.door import mount as mount_interconnect
    from adapters.postgres.env import eventsourcing_env
    from adapters.web.mount import mount, settings_from_env
    from domain.ledger import Ledger

    driver = DriverApiSettings.from_env(dict(os.environ))
    if driver is None:
        print("CHARGELEDGER_PAYMENT_KEYS is not set: serving the operator API only (no driver API)", file=sys.stderr)
    server = ServerSettings.from_env(os.environ)
    shards = None
    if os.environ.get("CHARGELEDGER_SHARDS", "").strip():  # tenant shards: each request on its tenant's (docs/shards.md)
        from adapters.api.shards import ApiShards
        from adapters.postgres.shards import ShardMap

        shards = ApiShards(ShardMap.from_env(os.environ), lambda url: Ledger(eventsourcing_env(url)))
    ledger = shards.home.ledger if shards else Ledger(eventsourcing_env(args.database_url))
    try:
        app = create_app(ledger, shards.map.directory_url if shards else args.database_url,
                         AuthSettings.from_env(dict(os.environ)), driver=driver, server=server, shards=shards)
        mount(app, settings_from_env(os.environ))  # the console's pages, /console (docs/console.md)
        interconnect = InterconnectSettings.from_env(os.environ)
        if interconnect is not None:
            mount_interconnect(app, interconnect)  # T/CEC 102, /evcs/v1 (docs/interconnect.md)
        with observability.serving(args, "api", database_url=args.database_url):  # /metrics on its own port
            uvicorn.Server(server_config(app, server, host=args.host, port=args.port,
                                         log_level=os.environ.get("LOG_LEVEL", "warning").lower())).run()
    finally:
        if shards is None:
            ledger.close()
        else:
            shards.close()  # every shard's Ledger and pools (again, if the app's shutdown did: harmless)
    return 0
