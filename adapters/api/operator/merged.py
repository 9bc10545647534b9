"""A platform admin's figures over several shards: each shard's figures (the same functions a tenant's
screen runs, on one shard's views), merged into the one answer a single database would have given.

Counts and sums add up; the power curve adds up per quarter hour (every shard's curve has the same 96
quarters); the top stations and the newest alarms are re-ranked and cut to the limit; today's
utilisation is the mean of the shards' weighted by their guns (exact when the stations keep one time
zone, as each shard's figure is its charging seconds over its guns' seconds today); the screen's zone
is the one most shards keep; revenue adds up per day and station. A deployment of one shard never comes
here (docs/shards.md).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

ADDED = ("stations", "piles", "guns", "today", "month", "power_now")


def add(a: Any, b: Any) -> Any:
    """Numbers added, dicts key by key (utilisation left to :func:`dashboards`), anything else: the first."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: add(a[k], b[k]) if k in b else a[k] for k in a}
    if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool):
        return a + b
    return a


def dashboards(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``/dashboard`` figures of several shards as one."""
    merged = dict(parts[0])
    for part in parts[1:]:
        for key in ADDED:
            if key in merged:
                merged[key] = add(merged[key], part[key])
    guns = sum(p["guns"]["total"] for p in parts)
    merged["today"] = {**merged["today"], "utilisation": round(
        sum(p["today"]["utilisation"] * p["guns"]["total"] for p in parts) / guns, 4) if guns else 0.0}
    return merged


def power_curves(curves: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Point by point (the same quarters in every curve): energy and watts added."""
    return [{**points[0], "energy": sum(p["energy"] for p in points), "power_w": sum(p["power_w"] for p in points)}
            for points in zip(*curves, strict=True)]


def top(rows: list[dict[str, Any]], by: str, limit: int) -> list[dict[str, Any]]:
    key = {"energy": "energy", "revenue": "revenue_fen"}[by]
    return sorted(rows, key=lambda r: (-r[key], r["name"], str(r["station_id"])))[:limit]


def screens(parts: list[dict[str, Any]], top_limit: int = 5, alarm_limit: int = 8) -> dict[str, Any]:
    """The big screen's figures of several shards as one."""
    merged = dashboards(parts)
    merged["power_curve"] = power_curves([p["power_curve"] for p in parts])
    by = parts[0]["top_stations"]["by"]
    merged["top_stations"] = {"by": by, "items": top([r for p in parts for r in p["top_stations"]["items"]],
                                                     by, top_limit)}
    merged["alarms"] = sorted((a for p in parts for a in p["alarms"]), key=lambda a: a["raised_at"],
                              reverse=True)[:alarm_limit]
    merged["zone"] = Counter(p["zone"] for p in parts).most_common(1)[0][0]
    return merged


def revenue(rows: list[dict[str, Any]], figures: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every shard's ``revenue_daily`` rows as one: summed per day and station (a station is on one shard,
    so this only orders them, unless a view was ever rebuilt in two places), newest day first."""
    summed: dict[tuple[Any, Any, Any], dict[str, Any]] = {}
    for row in rows:
        key = (row["day"], row["tenant_id"], row["station_id"])
        if key in summed:
            summed[key] = {**summed[key], **{k: int(summed[key][k]) + int(row[k]) for k in figures}}
        else:
            summed[key] = dict(row)
    return sorted(summed.values(), key=lambda r: (-r["day"].toordinal(), r["station_id"]))
