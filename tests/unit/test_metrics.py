"""The metrics' parts without a server: the cached collector, the families, the log context and
format, the exporter's paths and checks, every role's --metrics-port (docs/operations.md,
"Metrics and alarms to watch")."""

from __future__ import annotations

import io
import json
import logging
import socket
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from adapters.metrics import checks, figures, instruments, logs
from adapters.metrics.cached import Cached
from adapters.metrics.exporter import MetricsServer
from pile_link import observed
from pile_link.ykc import HeartbeatAck, encode_message

ROLES = (["gateway"], ["relay"], ["projections", "run"], ["watchdog"], ["tcec-outbox"], ["api"])


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client import generate_latest
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(generate_latest(registry).decode()) for s in family.samples}


def one(collector: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    return samples(registry)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# ---- the cached collector ------------------------------------------------------------------------------
def test_a_burst_of_scrapes_reads_once_per_ttl() -> None:
    clock, reads = Clock(), []

    def read() -> list[Any]:
        reads.append(clock.now)
        return [figures.gauge("chargeledger_holds_open", "h", len(reads))]
    cached = Cached("books", read, ttl=5.0, clock=clock)
    for _ in range(3):
        assert one(cached)[("chargeledger_holds_open", ())] == 1
    clock.now = 4.9
    assert one(cached)[("chargeledger_holds_open", ())] == 1
    clock.now = 5.0
    assert one(cached)[("chargeledger_holds_open", ())] == 2
    assert reads == [0.0, 5.0] and cached.reads == 2


def test_a_failing_source_yields_no_stale_figures_and_says_it_is_down(caplog: pytest.LogCaptureFixture) -> None:
    clock, failing = Clock(), [False]

    def read() -> list[Any]:
        if failing[0]:
            raise OSError("database away")
        return [figures.gauge("chargeledger_holds_open", "h", 7)]
    cached = Cached("books", read, ttl=1.0, clock=clock)
    assert one(cached) == {("chargeledger_holds_open", ()): 7, ("chargeledger_metrics_source_up", (("source", "books"),)): 1}
    failing[0], clock.now = True, 1.0
    with caplog.at_level(logging.WARNING, "chargeledger.metrics"):
        assert one(cached) == {("chargeledger_metrics_source_up", (("source", "books"),)): 0}
        clock.now = 2.0
        one(cached)
    assert [r.getMessage() for r in caplog.records] == [
        "metrics: books unreadable (OSError: database away); its figures are left out"]  # once, not per scrape
    failing[0], clock.now = False, 3.0
    assert one(cached)[("chargeledger_metrics_source_up", (("source", "books"),))] == 1


# ---- the families --------------------------------------------------------------------------------------
def test_the_books_families_sum_the_families_and_count_settlements() -> None:
    got = one(figures.Live(lambda: figures.books({
        ("account", "available"): -300, ("account", "held"): -200, ("account", "clearing:wechat"): 500,
        ("holds", "open"): 2, ("held", "fen"): 200, ("closed", "settled"): 5, ("closed", "failed"): 1})))
    assert got[("chargeledger_wallet_total_fen", (("family", "clearing:wechat"),))] == 500
    assert got[("chargeledger_wallet_total_fen", (("family", "held"),))] == -200
    assert got[("chargeledger_trial_balance_fen", ())] == 0
    assert got[("chargeledger_holds_open", ())] == 2 and got[("chargeledger_held_fen", ())] == 200
    assert got[("chargeledger_settlements_total", (("outcome", "settled"),))] == 5
    assert got[("chargeledger_settlements_total", (("outcome", "failed"),))] == 1


def test_the_gateway_families_read_its_registry_of_links() -> None:
    got = one(figures.Live(lambda: figures.gateway(3, 4, {"bad_frames": 2}, {"readings": 10})))
    assert got[("chargeledger_connected_piles", ())] == 3
    assert got[("chargeledger_gateway_connections", ())] == 4
    assert got[("chargeledger_gateway_events_total", (("event", "bad_frames"),))] == 2
    assert got[("chargeledger_gateway_queue_depth", (("queue", "readings"),))] == 10


def test_lags_are_labelled_by_follower_view_and_log() -> None:
    got = one(figures.Live(lambda: [*figures.relay_lag({"Sessions": 4}), *figures.projection_lag(
        {("orders", "Sessions"): 3, ("books", "Wallets"): 0}, [("orders", "Sessions")])]))
    assert got[("chargeledger_relay_lag", (("application", "Sessions"),))] == 4
    assert got[("chargeledger_follower_lag", (("application", "Sessions"), ("follower", "relay")))] == 4
    assert got[("chargeledger_projection_lag", (("application", "Sessions"), ("view", "orders")))] == 3
    assert got[("chargeledger_projection_held_back", (("application", "Sessions"), ("view", "orders")))] == 1
    assert got[("chargeledger_projection_held_back", (("application", "Wallets"), ("view", "books")))] == 0


def test_frames_are_named_by_their_message_and_unknown_types_share_one_label() -> None:
    assert observed.frame_name(0x03) == "Heartbeat" and observed.frame_name(0xEE) == "unknown"
    ack = encode_message(HeartbeatAck("32010600019236", "01", 0), b"\x00\x01")
    before = instruments.FRAMES_OUT.labels("HeartbeatAck")._value.get()
    observed.frame_out(ack)
    assert instruments.FRAMES_OUT.labels("HeartbeatAck")._value.get() == before + 1


def test_command_latency_is_observed_only_for_a_command_event() -> None:
    from datetime import UTC, datetime, timedelta

    def count() -> float:
        return sum(s.value for m in instruments.COMMAND_LATENCY.collect() for s in m.samples
                   if s.name.endswith("_count") and s.labels["command"] == "stop")
    before = count()
    instruments.command_event(None)
    instruments.command_sent("stop")  # a frame from what a pile is owed at login: no command's latency
    assert count() == before
    instruments.command_event(datetime.now(UTC) - timedelta(seconds=2))
    instruments.command_sent("stop")
    assert count() == before + 1
    instruments.command_event(None)


# ---- the log context -------------------------------------------------------------------------------------
def record(message: str = "m", **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord("chargeledger.pile_link", logging.WARNING, __file__, 1, message, (), None)
    rec.__dict__.update(extra)
    return rec


def test_the_filter_puts_the_bound_pile_session_and_tenant_on_every_record() -> None:
    f = logs.ContextFilter()
    with logs.bound(pile="32010600019236", session="3201060001923601250101120000000001"):
        rec = record()
        assert f.filter(rec)
        assert (rec.pile, rec.session, rec.tenant) == ("32010600019236", "3201060001923601250101120000000001", None)
        assert rec.context == " [pile=32010600019236 session=3201060001923601250101120000000001]"
        with logs.bound(tenant="t-1"):
            f.filter(rec2 := record())
            assert rec2.tenant == "t-1" and rec2.pile == "32010600019236"
        f.filter(own := record(pile="other"))
        assert own.pile == "other"  # a record naming its pile keeps it
    f.filter(rec3 := record())
    assert (rec3.pile, rec3.session, rec3.tenant, rec3.context) == (None, None, None, "")


def test_enter_sets_exactly_what_it_is_given() -> None:
    import contextvars

    def frames() -> list[tuple[Any, ...]]:
        logs.enter(pile="P", session="S", tenant=None)
        first = (logs.PILE.get(), logs.SESSION.get(), logs.TENANT.get())
        logs.enter(pile="P", session=None, tenant="T")  # the next frame names no session
        return [first, (logs.PILE.get(), logs.SESSION.get(), logs.TENANT.get())]
    assert contextvars.copy_context().run(frames) == [("P", "S", None), ("P", None, "T")]
    assert logs.PILE.get() is None  # nothing leaked out of that context


def test_json_lines_carry_the_fields_and_the_human_format_appends_them() -> None:
    rec = record("pile %s offline: %s")
    rec.args = ("32010600019236", "heartbeat lost")
    with logs.bound(pile="32010600019236", tenant="t-1"):
        logs.ContextFilter().filter(rec)
    line = json.loads(logs.JsonFormatter().format(rec))
    assert line["level"] == "WARNING" and line["logger"] == "chargeledger.pile_link"
    assert (line["pile"], line["tenant"], line["message"]) == ("32010600019236", "t-1",
                                                                "pile 32010600019236 offline: heartbeat lost")
    assert "session" not in line and line["ts"].endswith("+00:00")
    human = logging.Formatter(logs.HUMAN).format(rec)
    assert human.endswith("chargeledger.pile_link: pile 32010600019236 offline: heartbeat lost "
                          "[pile=32010600019236 tenant=t-1]")


def test_configure_installs_one_handler_and_leaves_a_hosts_handlers_alone() -> None:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    try:
        for h in saved:
            root.removeHandler(h)
        out = io.StringIO()
        handler = logs.configure("info", "json", stream=out)
        assert handler is not None and root.handlers == [handler]
        assert logs.configure("info", "json", stream=out) is not None and len(root.handlers) == 1  # replaced
        with logs.bound(session="S1"):
            logging.getLogger("chargeledger.test").info("hello")
        assert json.loads(out.getvalue().splitlines()[-1])["session"] == "S1"
        with pytest.raises(ValueError, match="json or human"):
            logs.configure("info", "xml")
        for h in list(root.handlers):
            root.removeHandler(h)
        host = logging.StreamHandler(io.StringIO())
        root.addHandler(host)
        assert logs.configure("info", "human") is None and root.handlers == [host]
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved:
            root.addHandler(h)
        root.setLevel(level)


# ---- the exporter and its checks ---------------------------------------------------------------------------
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_exporter_serves_metrics_liveness_and_readiness() -> None:
    up = [True]
    server = MetricsServer("127.0.0.1", 0, {"fake": lambda: (up[0], "ok" if up[0] else "down")},
                           lambda: {"role": "relay", "leader": False})
    with server:
        base = f"http://127.0.0.1:{server.port}"
        status, body = get(f"{base}/metrics")
        assert status == 200 and b"process_resident_memory_bytes" in body and b"chargeledger_frames_in_total" in body
        assert get(f"{base}/healthz") == (200, b'{"alive": true}')
        status, body = get(f"{base}/readyz")
        assert status == 200 and json.loads(body) == {"ready": True, "checks": {"fake": {"ok": True, "detail": "ok"}},
                                                      "role": "relay", "leader": False}
        up[0] = False
        status, body = get(f"{base}/readyz")
        assert status == 503 and json.loads(body)["checks"]["fake"] == {"ok": False, "detail": "down"}
        assert get(f"{base}/nothing")[0] == 404


def test_the_checks_say_not_ready_for_a_closed_port() -> None:
    port = closed_port()
    ok, detail = checks.database(f"postgresql://nobody@127.0.0.1:{port}/none", timeout=1)()
    assert not ok and "OperationalError" in detail
    ok, detail = checks.nats(f"nats://u:p@127.0.0.1:{port}", timeout=1)()
    assert not ok and f"127.0.0.1:{port}" in detail and "p@" not in detail


def test_every_role_command_accepts_metrics_port(monkeypatch: pytest.MonkeyPatch) -> None:
    import app

    for argv in ROLES:
        args = app.build_parser().parse_args([*argv, "--metrics-port", "9464", "--metrics-host", "0.0.0.0"])
        assert (args.metrics_port, args.metrics_host) == (9464, "0.0.0.0"), argv
        assert app.build_parser().parse_args(argv).metrics_port is None, argv
    monkeypatch.setenv("CHARGELEDGER_METRICS_PORT", "9100")
    for argv in ROLES:
        assert app.build_parser().parse_args(argv).metrics_port == 9100, argv
