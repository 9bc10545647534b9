"""The console's message catalogue covers every key the templates and pages use, in both languages;
its money and time filters show what the ledger means (no server needed)."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from adapters.web.catalogue import MESSAGES
from adapters.web.i18n import LANGUAGES, message
from adapters.web.messages_ops import BUILT as BUILT_OPS
from adapters.web.messages_peers import BUILT as BUILT_PEERS
from adapters.web.messages_pile import BUILT as BUILT_PILE
from adapters.web.pages.auth import ERRORS as LOGIN_ERRORS
from adapters.web.render import kwh, local, yuan

WEB = Path(__file__).resolve().parents[2] / "adapters" / "web"
KEY = re.compile(r"""_\(\s*["']([a-z0-9_.]+[a-z0-9_])["']""")
LITERAL = re.compile(r"""["']([a-z]+\.[a-z0-9_.]+[a-z0-9_])["']""")  # keys pages pass on: "error.404.title"
FILES = (".html", ".css", ".js", ".py", ".json")
PREFIXED = re.compile(r"""_\(\s*["']([a-z0-9_.]+\.)["']\s*~""")  # _("gun." ~ gun.status)


def used_keys() -> set[str]:
    keys: set[str] = set()
    prefixes = {key.split(".")[0] for key in MESSAGES}
    for path in WEB.rglob("*.html"):
        keys |= set(KEY.findall(path.read_text(encoding="utf-8")))
    for path in WEB.rglob("*.py"):
        if path.name != "catalogue.py":
            keys |= {k for k in LITERAL.findall(path.read_text(encoding="utf-8"))
                     if k.split(".")[0] in prefixes and not k.endswith(FILES)}
    return keys


def test_every_key_the_console_names_is_in_the_catalogue_in_both_languages() -> None:
    keys = used_keys()
    assert len(keys) > 40
    assert sorted(keys - MESSAGES.keys()) == []
    assert {"error.csrf.title", "error.404.text", "error.403.title"} <= keys  # what pages pass on is read
    assert all(f"login.{code}" in MESSAGES for code in LOGIN_ERRORS)
    for key, texts in MESSAGES.items():
        assert len(texts) == len(LANGUAGES) and all(t.strip() for t in texts), key


def test_keys_built_in_a_template_exist_for_every_value_they_take() -> None:
    prefixes = set()
    for path in WEB.rglob("*.html"):
        prefixes |= set(PREFIXED.findall(path.read_text(encoding="utf-8")))
    values = {"gun.": ("idle", "charging", "offline", "fault"), "piles.kind.": ("DC", "AC"),
              "role.": ("platform_admin", "tenant_admin", "agent"), **BUILT_OPS, **BUILT_PILE, **BUILT_PEERS}
    assert prefixes == set(values)
    for prefix, names in values.items():
        for name in names:
            assert prefix + name in MESSAGES


def test_a_missing_key_is_an_error_not_a_blank() -> None:
    with pytest.raises(KeyError):
        message("zh", "no.such.key")
    assert message("en", "home.welcome", name="li") == "Welcome, li"


def test_money_is_yuan_with_two_decimals_from_integer_fen() -> None:
    assert [yuan(f) for f in (0, 5, 1234, 100_000_01, -250)] == ["0.00", "0.05", "12.34", "100000.01", "-2.50"]
    assert yuan(None) == "" and kwh(123456) == "12.3456"


def test_instants_are_shown_in_the_station_zone() -> None:
    at = datetime(2026, 11, 22, 16, 30, 5, tzinfo=timezone.utc)
    assert local(at, "Asia/Shanghai") == "2026-11-23 00:30:05"
    assert local(at, "Asia/Urumqi") == "2026-11-22 22:30:05"
    assert local(at.isoformat(), None, seconds=False) == "2026-11-23 00:30"
