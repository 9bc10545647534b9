"""`chargeledger demo --once` runs the scripted day end to end and exits 0 only if the books balance."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_once_balances(database_url: str, nats_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "NATS_URL": nats_url}
    result = subprocess.run([sys.executable, "-m", "app", "demo", "--once"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=240)  # under pytest's 300 s, to show its output
    assert result.returncode == 0, result.stdout + result.stderr
    assert "books balance" in result.stdout
    assert "total                             0" in result.stdout
    assert "(caught up)" in result.stdout
    live = result.stdout.split("live sessions, priced by the platform")[1].split("refunded")[0]
    assert live.count(" finished ") == 4, live  # app starts, a balance stop, an offline upload, a card start
    assert "balance used up" in live
