"""What every wallet command shares, apart from the wallet: posting sets, amounts, the idempotency prelude.

Split out of :mod:`domain.wallet` (which re-exports what others import from it) so the aggregate keeps
its commands and events in one module under 400 lines. Nothing here changed in the move: the
fingerprint of a command is still ``sha256(json([name, arguments]))[:32]`` over the command's name
and its arguments after ``key`` (``tests/unit/test_wallet_commands.py`` holds the stored fields of
every command), so existing idempotency keys still match.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from collections.abc import Callable
from typing import Any

from domain.errors import InvalidAmount

Posting = list  # [account, signed amount in fen]; debit > 0, credit < 0


def fingerprint(command: str, args: dict[str, Any]) -> str:
    raw = json.dumps([command, args], sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def idempotent(body: Callable[..., None]) -> Callable[..., None]:
    """A wallet command with an idempotency key: the prelude every command shares, written once.

    The command is called as ``command(key, **arguments)`` (or positionally, in the declared order).
    Its arguments (every parameter after ``key`` and ``fp``) are fingerprinted with the command's name
    (:func:`fingerprint`); a key seen before with the same fingerprint returns at once and changes
    nothing; a key seen with another is refused (:meth:`domain.wallet.Wallet.seen`). Otherwise the body runs as
    ``body(self, key, fp, **arguments)`` and records its event with ``key`` and ``fp``, which is how
    a replayed wallet knows its keys. The fingerprint is exactly what each command computed by hand
    before this decorator (tests/unit/test_wallet_commands.py holds the stored fields of every command).
    """
    name = body.__name__
    signature = inspect.signature(body)
    names = tuple(signature.parameters)[3:]  # after self, key, fp

    @functools.wraps(body)
    def command(self: Any, key: str, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(names):
            raise TypeError(f"{name}() takes {len(names) + 1} arguments, got {len(args) + 1}")
        for arg_name, value in zip(names, args, strict=False):
            if arg_name in kwargs:
                raise TypeError(f"{name}() got multiple values for argument {arg_name!r}")
            kwargs[arg_name] = value
        if kwargs.keys() != set(names):
            raise TypeError(f"{name}() takes key and {', '.join(names)}; got {', '.join(sorted(kwargs))}")
        if self.seen(key, name, kwargs):
            return
        body(self, key, fingerprint(name, kwargs), **kwargs)

    command.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p for n, p in signature.parameters.items() if n != "fp"])
    return command


def checked_amount(value: Any, what: str, *, allow_zero: bool = False) -> int:
    """``value`` if it is a whole number of fen above zero (or zero, if allowed); else :class:`InvalidAmount`."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidAmount(f"{what} must be an integer number of fen, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidAmount(f"{what} must be {'>= 0' if allow_zero else '> 0'} fen, got {value}")
    return value


def posting_set(*legs: tuple[str, int]) -> list[Posting]:
    """The non-zero legs ``(account, amount)`` as a posting set, which always balances."""
    postings = [[account, amount] for account, amount in legs if amount != 0]
    assert sum(a for _, a in postings) == 0, postings  # a posting set always balances
    return postings


def posting_sets_of(event: Any) -> list[list[Posting]]:
    """The posting sets a stored wallet event carries (for replay, projections and audit)."""
    sets = []
    for attr in ("postings", "release"):
        postings = getattr(event, attr, None)
        if postings:
            sets.append(postings)
    return sets
