"""``chargeledger operators add|disable|enable|passwd|list``: operator users (the first platform
admin comes from here). Passwords are read from stdin, or prompted for at a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import TypeVar
from uuid import UUID

from adapters.api.auth import (AGENT, OPERATOR_ROLES, PLATFORM_ADMIN, USERNAME_RULE, check_password, check_username,
                               hash_password)
from adapters.cli.servers import with_database
from adapters.postgres.operator_users import OperatorUsers

User = TypeVar("User")


def existing(user: User | None, username: str) -> User:
    """``user``, or LookupError naming ``username`` if there is none."""
    if user is None:
        raise LookupError(f"no operator user {username}")
    return user


def add_arguments(parser: argparse.ArgumentParser) -> None:
    operations = parser.add_subparsers(dest="operation", required=True, metavar="{add,disable,enable,passwd,list}")
    add = operations.add_parser("add", help="create an operator user (the first platform admin comes from here); "
                                            "the password is read from stdin")
    add.add_argument("username", help=USERNAME_RULE)
    add.add_argument("--role", choices=OPERATOR_ROLES, default=PLATFORM_ADMIN)
    add.add_argument("--tenant", type=UUID, help="tenant id (tenant admins and agents)")
    add.add_argument("--station", type=UUID, action="append", default=[], help="an agent's station (repeatable)")
    add.set_defaults(operate=_add)
    for name, operate, text in (("disable", _disable, "disable a user: their tokens stop working at once"),
                                ("enable", _enable, "enable a disabled user (they sign in again)"),
                                ("passwd", _passwd, "set a user's password (read from stdin); revokes their tokens")):
        command = operations.add_parser(name, help=text)
        command.add_argument("username")
        command.set_defaults(operate=operate)
    operations.add_parser("list", help="list the operator users").set_defaults(operate=_list)


@with_database
def run(args: argparse.Namespace) -> int:
    """Manage operator users in ``args.database_url``."""
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from psycopg_pool import AsyncConnectionPool

    pool = AsyncConnectionPool(args.database_url, min_size=1, max_size=1, open=False)
    await pool.open(wait=True)
    try:
        users = OperatorUsers(pool)
        await users.create_schema()
        return int(await args.operate(args, users))
    except (ValueError, LookupError) as exc:
        print(exc.args[0] if exc.args else exc, file=sys.stderr)
        return 2
    finally:
        await pool.close()


def read_password() -> str:
    """One line from stdin (scripts), or a prompt at a terminal."""
    if sys.stdin.isatty():
        return getpass.getpass("password: ")
    return sys.stdin.readline().rstrip("\n")


async def _add(args: argparse.Namespace, users: OperatorUsers) -> int:
    check_username(args.username)
    if args.role != PLATFORM_ADMIN and args.tenant is None:
        raise ValueError("--tenant is required for a tenant admin or an agent")
    if args.role == AGENT and not args.station:
        raise ValueError("an agent needs at least one --station")
    password = check_password(read_password())
    tenant = None if args.role == PLATFORM_ADMIN else args.tenant
    stations = args.station if args.role == AGENT else []
    if not await users.add(args.username, hash_password(password), args.role, "cli", tenant, stations):
        raise ValueError("that user name is taken")
    print(f"created {args.role} {args.username}")
    return 0


async def _disable(args: argparse.Namespace, users: OperatorUsers) -> int:
    existing(await users.set_disabled(args.username, True), args.username)
    print(f"disabled {args.username}")
    return 0


async def _enable(args: argparse.Namespace, users: OperatorUsers) -> int:
    existing(await users.set_disabled(args.username, False), args.username)
    print(f"enabled {args.username}")
    return 0


async def _passwd(args: argparse.Namespace, users: OperatorUsers) -> int:
    existing(await users.find(args.username), args.username)
    existing(await users.set_password(args.username, hash_password(check_password(read_password()))),
             args.username)
    print(f"password set for {args.username}; their tokens are revoked")
    return 0


async def _list(args: argparse.Namespace, users: OperatorUsers) -> int:
    for user in await users.listing(None):
        stations = ",".join(sorted(str(s) for s in user.stations))
        print(f"{user.username:32} {user.role:15} {user.tenant_id or '-'!s:36} "
              f"{'disabled' if user.disabled else 'enabled':8} {stations}")
    return 0
