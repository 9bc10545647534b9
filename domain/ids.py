"""Name-based aggregate ids: one rule for every aggregate whose id is derived from a natural key.

An id is ``uuid5(NAMESPACE_URL, "chargeledger:<kind>:<part>:<part>...")``, so the same pile number,
trade serial, card or driver always names the same aggregate, in every process, with no lookup. The
strings are stored ids' origins: never change their spelling (existing ledgers' ids would move).
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5


def derived_id(kind: str, *parts: object) -> UUID:
    """The id of the ``kind`` aggregate named by ``parts`` (each written with ``str``)."""
    return uuid5(NAMESPACE_URL, ":".join(("chargeledger", kind, *map(str, parts))))
