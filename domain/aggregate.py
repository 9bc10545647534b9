"""What the aggregates share: a cheap copy for the repository to hand commands."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def shallow_clone(obj: T) -> T:
    """A new instance sharing every attribute of ``obj``: what ``copy.copy`` makes, without its
    ``__reduce_ex__`` round (a cached session is copied for every meter reading). The caller
    re-copies the containers its commands mutate in place."""
    clone = object.__new__(type(obj))
    clone.__dict__.update(obj.__dict__)
    return clone
