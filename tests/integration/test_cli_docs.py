"""The docs and the CLI agree (issue 10, finding 13): every `chargeledger ...` command shown in
README.md and docs/ parses with the real argument parser; and `chargeledger operators` manages
operator users as the docs say (add, disable, enable, passwd, list; passwords on stdin).

How the docs write a command, and how this test reads it:

* in an inline code span (`` `chargeledger api --port 8000` ``) or a line of a fenced code block
  starting with ``chargeledger``; a ``# comment`` after it is not part of it;
* ``[--opt X]`` is optional: the command is parsed without its optional parts and with all of them;
* ``a|b|c`` is a choice: each alternative is parsed; ``…`` (more of the same) is dropped;
* upper-case words are placeholders (``NAME``, ``T`` a tenant id, ``S`` a station id, ``D`` a date,
  ``DIR``, ``F``);
* a bare mention (only command names, e.g. `` `chargeledger simulate` ``) must name a command:
  it is parsed with ``--help``.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import re
import shlex
import sys
from argparse import ArgumentParser, _SubParsersAction
from pathlib import Path

import psycopg
import pytest

from app import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDERS = {"NAME": "ops.admin", "T": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
                "S": "7a0da3cc-0fac-42dd-b379-775fa5894881", "D": "2026-11-22", "DIR": "out", "F": "bill.csv"}


def documented_commands() -> list[tuple[str, str]]:
    """(where, command text) for every command the docs show."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        fenced = False
        for number, line in enumerate(path.read_text().splitlines(), 1):
            where = f"{path.relative_to(ROOT)}:{number}"
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            if fenced and line.strip().startswith("chargeledger "):
                found.append((where, line.split("  #")[0].split(" # ")[0].strip()))
            elif not fenced:
                found += [(where, span) for span in re.findall(r"`(chargeledger(?: [^`]*)?)`", line)]
    return found


def argvs(text: str) -> list[list[str]]:
    """The argument vectors a documented command stands for (see the module's notes)."""
    text = text.replace("…", "").replace("...", "")
    optional = re.findall(r"\[([^\]]*)\]", text)
    bare = re.sub(r"\s*\[[^\]]*\]", "", text)
    forms = {bare, " ".join([bare, *optional])}
    out = []
    for form in sorted(forms):
        words = [PLACEHOLDERS.get(w, w) for w in shlex.split(form)[1:]]
        for choice in itertools.product(*(w.split("|") for w in words)):
            out.append(list(choice))
    return out


def is_command_path(parser: ArgumentParser, words: list[str]) -> bool:
    for word in words:
        subparsers = [a for a in parser._actions if isinstance(a, _SubParsersAction)]
        if not subparsers or word not in subparsers[0].choices:
            return False
        parser = subparsers[0].choices[word]
    return True


def parse(argv: list[str]) -> str | None:
    """None if the parser accepts ``argv``, else what it said."""
    parser, err = build_parser(), io.StringIO()
    if is_command_path(parser, argv):
        argv = [*argv, "--help"]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(argv)
    except SystemExit as exit_:
        return None if exit_.code == 0 else err.getvalue().strip()
    return None


def test_the_docs_show_commands() -> None:
    texts = [text for _, text in documented_commands()]
    assert len(texts) >= 20
    for operation in ("add", "disable", "enable", "passwd", "list"):
        assert any(t.startswith(f"chargeledger operators {operation}") for t in texts), operation


def test_every_documented_command_parses() -> None:
    refused = [f"{where}: `{text}` -> {' '.join(argv)}: {said}"
               for where, text in documented_commands() for argv in argvs(text) if (said := parse(argv))]
    assert not refused, "\n".join(refused)


def test_a_misspelt_command_is_caught() -> None:
    """The check above can fail: the old form of the operators command is refused."""
    assert parse(["operators", "ops.admin"])
    assert parse(["operators", "add", "--role", "agent"])
    assert parse(["operators", "add", "ops.admin", "--role", "root"])


# ---- chargeledger operators ------------------------------------------------------------------------------
@pytest.fixture
def cli(database_url: str, nats_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("NATS_URL", nats_url)
    monkeypatch.setenv("CHARGELEDGER_VAR", str(tmp_path))
    return database_url


def run(monkeypatch: pytest.MonkeyPatch, argv: list[str], stdin: str = "") -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(argv)


def user(database_url: str, name: str) -> tuple:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT role, tenant_id, stations, disabled, token_generation, password_hash "
                            "FROM operator_users WHERE username = %s", (name,)).fetchone()


def test_the_operators_command_adds_disables_enables_resets_and_lists(
        cli: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    tenant, station = PLACEHOLDERS["T"], PLACEHOLDERS["S"]
    assert run(monkeypatch, ["operators", "add", "root.admin", "--role", "platform_admin"], "a long passphrase\n") == 0
    assert run(monkeypatch, ["operators", "add", "agent.cli", "--role", "agent", "--tenant", tenant,
                             "--station", station], "another passphrase\n") == 0
    role, tenant_id, stations, disabled, generation, stored = user(cli, "agent.cli")
    assert (role, str(tenant_id), [str(s) for s in stations], disabled) == ("agent", tenant, [station], False)
    assert stored.startswith("$argon2id$") and "another passphrase" not in stored
    assert run(monkeypatch, ["operators", "disable", "agent.cli"]) == 0
    assert user(cli, "agent.cli")[3] is True
    assert run(monkeypatch, ["operators", "enable", "agent.cli"]) == 0
    assert user(cli, "agent.cli")[3] is False
    assert run(monkeypatch, ["operators", "passwd", "agent.cli"], "a third passphrase\n") == 0
    after = user(cli, "agent.cli")
    assert after[5] != stored and after[4] > generation
    capsys.readouterr()
    assert run(monkeypatch, ["operators", "list"]) == 0
    listing = capsys.readouterr().out
    assert "root.admin" in listing and "agent.cli" in listing and "argon2" not in listing
    # refusals: a taken name, an unsafe name, a short password, an agent without stations, no such user
    for argv, stdin in ((["operators", "add", "root.admin"], "a long passphrase\n"),
                        (["operators", "add", "bad\u202ename"], "a long passphrase\n"),
                        (["operators", "add", "short.pw"], "short\n"),
                        (["operators", "add", "agent.none", "--role", "agent", "--tenant", tenant],
                         "a long passphrase\n"),
                        (["operators", "disable", "nobody.here"], "")):
        assert run(monkeypatch, argv, stdin) == 2, argv
    assert user(cli, "short.pw") is None and user(cli, "agent.none") is None
