"""``chargeledger serve --role ROLE [role options]``: one entry point that runs one role of the platform.

Each role is the command that already runs it (its module's ``add_arguments`` and ``run``), so ``serve
--role gateway --port 8767`` and ``gateway --port 8767`` are the same process. Every role may run any
number of times (docs/operations.md, "Deploying the roles and the cluster"):

* ``gateway``, ``api``: as many as the load needs, each on its own port behind a balancer;
* ``relay``, ``projections``: one leads (a Postgres advisory lock each), the others stand by and one
  takes over within about a second of the leader's death;
* ``watchdog``, ``interconnect`` (the T/CEC outbox): every process works, taking turns on the tracking
  rows and leasing what it sends, so the survivors carry on when one dies.

The role's options are parsed when the command line is (a wrong one is refused before anything starts).
"""

from __future__ import annotations

import argparse
from types import ModuleType
from typing import Any

from adapters.cli import api, gateway, projections, relay, tcec_outbox, watchdog

# role -> (the command's module, the words its parser is given before the role's options)
ROLES: dict[str, tuple[ModuleType, tuple[str, ...]]] = {
    "gateway": (gateway, ()),
    "api": (api, ()),
    "relay": (relay, ()),
    "projections": (projections, ("run",)),
    "watchdog": (watchdog, ()),
    "interconnect": (tcec_outbox, ()),
}


def role_parser(role: str) -> argparse.ArgumentParser:
    """The parser of ``role``'s own options (the command's)."""
    module, _ = ROLES[role]
    parser = argparse.ArgumentParser(prog=f"chargeledger serve --role {role}",
                                     description=(module.__doc__ or "").splitlines()[0])
    module.add_arguments(parser)
    return parser


class RoleAction(argparse.Action):
    """``--role ROLE [options]``: the role, then everything after it parsed by that role's own parser."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if not values or values[0] not in ROLES:
            parser.error(f"--role is one of {', '.join(ROLES)} (got {values[0] if values else 'nothing'})")
        role, options = values[0], list(values[1:])
        _, prefix = ROLES[role]
        namespace.role = role
        namespace.role_args = role_parser(role).parse_args([*prefix, *options])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--role", required=True, nargs=argparse.REMAINDER, action=RoleAction,
                        metavar="ROLE [OPTIONS]",
                        help=f"one of {', '.join(ROLES)}, then that role's own options "
                             "(`chargeledger serve --role gateway --help` lists the gateway's)")


def run(args: argparse.Namespace) -> int:
    module, _ = ROLES[args.role]
    return int(module.run(args.role_args))
