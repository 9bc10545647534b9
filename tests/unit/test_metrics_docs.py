"""The dashboard and the operations guide name exactly the metrics chargeledger exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"chargeledger_[a-z_]+")
SUFFIXES = ("_bucket", "_count", "_sum")


def defined() -> set[str]:
    """Every metric name the code defines (instruments.py, figures.py, cached.py), as exposed (a
    counter's name is written with its ``_total``)."""
    names = set()
    for path in (ROOT / "adapters" / "metrics").glob("*.py"):
        for name in re.findall(r'"(chargeledger_[a-z_]+)"', path.read_text()):
            names.add(name)
    assert "chargeledger_frames_in_total" in names and "chargeledger_connected_piles" in names
    return names


def queried(text: str) -> set[str]:
    out = set()
    for name in NAME.findall(text):
        for suffix in SUFFIXES:
            name = name.removesuffix(suffix)
        out.add(name)
    return out


def test_the_dashboard_is_valid_json_and_queries_only_metrics_that_exist() -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana" / "chargeledger.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] == "chargeledger"
    shown = queried("\n".join(exprs))
    assert shown <= defined(), shown - defined()
    assert defined() - shown == set(), "every metric has a panel"


def test_the_operations_guide_explains_every_metric() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    section = guide[guide.index("### Metrics and alarms to watch"):]
    assert {n for n in defined() if f"`{n}" not in section} == set()
    assert queried(section) <= defined(), queried(section) - defined()
