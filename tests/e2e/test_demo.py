"""`chargeledger demo --once` runs the scripted day end to end and exits 0 only if the books balance;
`chargeledger demo --serve` then keeps the console, the 经营大屏 and the driver H5 pages up on a charging fleet."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

from tests.console import csrf_of, sign_in

ROOT = Path(__file__).resolve().parents[2]


class Output:
    """A process's output as it comes, read by a thread, so that waiting for a line has a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def text(self) -> str:
        if self.process.poll() is not None:
            self.reader.join(timeout=10)
        return "".join(self.lines)

    def until(self, marker: str, seconds: float) -> str:
        """Everything printed up to and including the line with ``marker`` (fails if the process ends first)."""
        deadline = time.monotonic() + seconds
        while marker not in self.text() and self.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        text = self.text()
        assert marker in text, text[-4000:]
        return text[:text.index(marker)] + text[text.index(marker):].split("\n", 1)[0]


def loaded(client: httpx.Client, url: str, ready: Callable[[str], bool], tries: int = 150) -> str:
    """The page at ``url`` once ``ready`` says so (a view catching up, a payment arriving), else the last one."""
    for _ in range(tries):
        page = client.get(url)
        if page.status_code == 200 and ready(page.text):
            break
        time.sleep(0.2)
    return page.text


def printed(text: str, patterns: tuple[str, ...]) -> list[str]:
    """The groups of each pattern in ``text``, in order (each must be there)."""
    groups: list[str] = []
    for pattern in patterns:
        found = re.search(pattern, text)
        assert found, f"{pattern!r} not in the output:\n{text[-3000:]}"
        groups += found.groups()
    return groups


def figure(html: str, name: str) -> str:
    """The figure an element ``data-figure="<name>"`` shows: its own text (the H5 pages), else its first
    ``<span class="figure">`` or ``<b>`` (the 经营大屏's tiles)."""
    at = html.find(f'data-figure="{name}"')
    assert at >= 0, f"no figure {name}"
    found = (re.match(r'data-figure="[^"]*"[^>]*>([^<]+)<', html[at:])
             or re.search(r'<(?:span class="figure"|b)>([^<]*)<', html[at:]))
    assert found, f"no figure {name}"
    return found.group(1).strip()


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


def test_demo_serve_keeps_the_console_the_screen_and_the_h5_page_up_until_sigterm(database_url: str,
                                                                                  nats_url: str) -> None:
    """`chargeledger demo --serve`, as `make demo` at a terminal: after the scripted day, the printed demo login
    opens the console and the 经营大屏 with the demo tenant's figures, the printed QR link opens the gun on the H5
    page with the demo driver login, a top-up is credited by the fake WeChat Pay's signed notification; SIGTERM
    ends it with 0, and no server it started is left."""
    env = {**os.environ, "DATABASE_URL": database_url, "NATS_URL": nats_url}
    env.pop("CHARGELEDGER_H5_DEMO_LOGIN", None)
    demo = subprocess.Popen([sys.executable, "-m", "app", "demo", "--serve"], cwd=ROOT, env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = Output(demo)
    try:
        block = output.until("  views  ", 200)
        base, user, password, h5, gateway, wechat, piles = printed(block, (
            r"console\s+(http://127\.0\.0\.1:\d+)/console/\n", r"login\s+(\S+) / (\S+)", r"driver H5\s+(\S+)",
            r"YKC gateway\s+127\.0\.0\.1:(\d+)", r"fake WeChat Pay \(demo only, http://127\.0\.0\.1:(\d+)\)",
            r"(\d+) simulated piles"))
        assert re.search(rf"经营大屏\s+{re.escape(base)}/console/screen\n", block)
        ports = [int(base.rsplit(":", 1)[1]), int(gateway), int(wechat)]
        started = psutil.Process(demo.pid).children(recursive=True)

        with httpx.Client(base_url=base, timeout=30) as operator:
            signed_in = sign_in(operator, user, password)
            assert signed_in.status_code == 303 and signed_in.headers["location"] == "/console/", signed_in.text
            screen = loaded(operator, "/console/screen", lambda page: figure(page, "online") == piles)
            assert figure(screen, "online") == piles  # the live-status view follows the piles
            assert '<span class="tenant">Demo Charging Co.</span>' in screen
            assert int(figure(screen, "sessions-today")) >= 4  # the scripted day's live sessions at least
            assert figure(screen, "revenue-today") != "0.00"

        with httpx.Client(timeout=30, follow_redirects=True) as phone:
            login = phone.get(h5)
            assert login.url.path == "/console/h5/login" and 'action="/console/h5/login/demo"' in login.text
            gun = phone.post(f"{base}/console/h5/login/demo", data={
                "csrf": csrf_of(login.text), "name": "visitor", "next": login.url.params["next"]})
            assert gun.status_code == 200 and gun.url.path == "/console/h5/c/" + h5.rsplit("/", 1)[1], gun.url
            assert h5.rsplit("/", 1)[1][:14] in gun.text
            wallet = phone.get(f"{base}/console/h5/wallet")
            top_up = phone.post(f"{base}/console/h5/wallet/top-ups",
                                data={"csrf": csrf_of(wallet.text), "amount": "60"})
            assert top_up.status_code == 200 and "/console/h5/wallet/top-ups/" in top_up.url.path
            credited = loaded(phone, str(top_up.url), lambda page: 'data-state="credited"' in page)
            assert 'data-state="credited"' in credited and figure(credited, "available") == "¥ 60.00"
        output.until("fake WeChat Pay (demo only): top-up", 30)
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGTERM)
        try:
            code = demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()
            raise
    text = output.text()
    assert code == 0, text[-4000:]
    assert "stopping: the drivers go home" in text
    assert not [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for port in ports:  # the API, the YKC gateway and the fake WeChat Pay no longer listen
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, port
