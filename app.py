"""Composition root and CLI: ``chargeledger <command>``.

Reads settings from the environment (``DATABASE_URL``, ``NATS_URL``, ``CHARGELEDGER_VAR``), starts
the project's own Postgres and NATS under ./var when those URLs are unset, and wires the pieces.

This file is the parser and the dispatch only: each command group is a module with
``add_arguments(parser)`` and ``run(args)`` (adapters/cli/, and the simulator's own), registered in
COMMANDS below. Nothing imports this module.
"""

from __future__ import annotations

import argparse
import os
import sys

from adapters.metrics import logs
from adapters.cli import (api, audit, cluster, demo, gateway, operators, peers, projections, relay, serve, servers,
                          shards, tcec_outbox, watchdog)
from pile_link.simulator import cli as simulate
from simulation import runner as simulate_faults

COMMANDS = (  # (name, module with add_arguments(parser) and run(args), help), in the order --help lists them
    ("demo", demo, "scripted sessions on the ledger; prints what happened and the books"),
    ("serve", serve, "run one role: --role gateway|api|relay|projections|watchdog|interconnect [its options]"),
    ("servers", servers, "start the embedded Postgres and NATS and print their URLs"),
    ("relay", relay, "publish every ledger event to NATS JetStream"),
    ("gateway", gateway, "the YKC pile gateway (TCP), with a relay beside it unless --no-relay"),
    ("watchdog", watchdog, "session deadlines and wallet follow-ups (safe to run twice)"),
    ("projections", projections, "follow the ledger into the read views, or rebuild them"),
    ("api", api, "the operator and driver HTTP API (FastAPI under uvicorn)"),
    ("cluster", cluster, "a local multi-process deployment under supervisord: up, down, status"),
    ("operators", operators, "manage operator credentials (platform, tenant, agent)"),
    ("peers", peers, "a tenant's T/CEC peer platforms and their credentials (interconnect)"),
    ("tcec-outbox", tcec_outbox, "the T/CEC pushes to peer platforms, with retries (interconnect)"),
    ("shards", shards, "the tenant shards (CHARGELEDGER_SHARDS): list them, record where a tenant lives"),
    ("audit", audit, "replay, verify, seal and export the ledger (for auditors)"),
    ("simulate", simulate, "simulated YKC piles (or a load of connections) against a gateway"),
    ("simulate-faults", simulate_faults, "the deterministic fault simulator: seeded schedules of crashes, lost "
                                         "and repeated frames, late records, clock jumps"),
)


def build_parser() -> argparse.ArgumentParser:
    """Every command and its arguments (tests/integration/test_cli_docs.py parses the documented commands with it)."""
    parser = argparse.ArgumentParser(prog="chargeledger", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module, text in COMMANDS:
        command = sub.add_parser(name, help=text)
        module.add_arguments(command)
        command.set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    logs.configure(os.environ.get("LOG_LEVEL", "WARNING"), os.environ.get("LOG_FORMAT", "human"))
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
