"""The use cases, one typed method each, grouped by what they change.

:class:`domain.ledger.Ledger` is all of them together; :mod:`domain.use_cases.core` holds what
they share (the Applications, retry on a conflict, batches, the wallet follow-through of session
commands, the registry of stored wallet command names). See docs/architecture.md, "Use cases".
"""
