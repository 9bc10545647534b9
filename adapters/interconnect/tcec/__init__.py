"""T/CEC 102 (中电联 "evcs") as a pure protocol layer: crypto, envelopes, models, the receive pipeline.

Nothing here imports FastAPI, httpx or a database driver: the HTTP door (``adapters.interconnect.door``),
the client (``adapters.interconnect.client``) and the peer store (``adapters.interconnect.store``)
are built on it. ``tests/unit/interconnect/test_purity.py`` keeps it so.
"""
