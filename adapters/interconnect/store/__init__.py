"""The interconnect's tables: peers with their sealed credentials, tokens issued and held, envelopes seen.

Rows, not events (like ``operator_users``): secrets must be replaceable and erasable, and the
append-only event store would keep every one for ever. Each module owns one table:
``peers.py`` (``tcec_peers``), ``tokens.py`` (``tcec_tokens_issued``, ``tcec_tokens_held``),
``seen.py`` (``tcec_envelopes_seen``); ``schema.py`` creates them all under the schema lock.
"""
