"""The domain's use cases, in memory: the Ledger on the library's POPO recorders, no server.

The integration modules prove the same behaviour on Postgres (ordering, concurrency, one
transaction across tables); here their domain tests run again on an in-memory Ledger, fast, so a
change to an aggregate or a use case is checked in seconds (``pytest tests/unit``). Tests that
are about Postgres itself (two processes, a lost connection) are left out by name.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from domain.ledger import Ledger
from tests.integration import test_roaming_charges, test_sessions, test_text, test_use_cases, test_wallet_properties

POSTGRES_ONLY = {
    "test_a_stale_cached_session_is_reloaded_when_another_process_wrote",  # two processes, one database
}

for module in (test_sessions, test_use_cases, test_wallet_properties, test_text, test_roaming_charges):
    for name, test in vars(module).items():
        if name.startswith("test_") and callable(test) and name not in POSTGRES_ONLY:
            assert name not in globals(), f"two modules have a test named {name}"
            globals()[name] = test


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    """The in-memory Ledger, in place of the Postgres one the integration tests are given."""
    led = Ledger()
    yield led
    led.close()


@pytest.fixture
def database_url() -> str:
    raise AssertionError("a test that needs Postgres belongs in POSTGRES_ONLY")
