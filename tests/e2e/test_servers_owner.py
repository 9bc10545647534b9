"""Who stops an embedded server: the process that started it, or one that took over an orphan.

A process that finds the server already running borrows it when the process that started it still
runs (``release`` leaves it up), and owns it when that process is gone (a crash left it running;
someone has to stop it). The process-level test is
``tests/e2e/test_relay_lifecycle.py::test_a_relay_stopped_with_ctrl_c_leaves_running_the_servers_it_did_not_start``.
"""

import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from adapters.servers.nats_server import EmbeddedNats
from adapters.servers.postgres_server import EmbeddedPostgres
from adapters.servers.resolve import release


def a_finished_process() -> str:
    """The owner line of a process that ran and is gone."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    created = psutil.Process(proc.pid).create_time()
    proc.wait()
    return f"{proc.pid} {created}\n"


@pytest.mark.parametrize("kind", [EmbeddedPostgres, EmbeddedNats])
def test_a_server_started_elsewhere_is_borrowed_and_an_orphan_is_taken_over(kind, tmp_path: Path) -> None:
    first = kind(tmp_path / "server").start()
    try:
        assert first.owned
        first.owner_file.write_text(f"{psutil.Process().parent().pid} {psutil.Process().parent().create_time()}\n")
        borrower = kind(tmp_path / "server").start()  # another live process started it
        assert not borrower.owned
        release([borrower])
        assert first.running()
        first.owner_file.write_text(a_finished_process())  # its starter died: an orphan
        heir = kind(tmp_path / "server").start()
        assert heir.owned
        release([heir])
        assert not first.running()
    finally:
        first.stop()
