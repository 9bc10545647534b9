"""Every role starts safely beside any other on an empty database (docs/architecture.md, Table creation).

Each role creates its tables when it starts. Started at the same instant (as docs/operations.md
allows), they used to collide: ``Key (typname, typnamespace)=(wallets_snapshots, 2200) already
exists``. Here real processes, one per role and two of some, build what their entry point builds,
released together on a fresh empty database, round after round.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid

import psycopg

from adapters.servers.postgres_server import create_database

ROUNDS = 10
ROLES = ("api", "api", "gateway", "projections", "projections", "relay")

# One worker per role: imports once, then for every database URL read from stdin builds the role's
# objects the way its entry point does (adapters/cli/api.py, gateway.py, projections.py, relay.py), closes
# them and answers "ok" or the error. All workers are blocked on stdin, so writing the URL to each
# releases them together.
WORKER = textwrap.dedent("""
    import json, sys, traceback
    from adapters.api.auth import AuthSettings
    from adapters.api.driver.settings import DriverApiSettings
    from adapters.api.app import create_app
    from adapters.payments.config import SecretBox
    from adapters.postgres.env import eventsourcing_env
    from adapters.followers.relay.publisher import Relay
    from domain.ledger import Ledger
    from pile_link.gateway import Gateway
    from projections.runner import Projections

    role, nats_url = sys.argv[1], sys.argv[2]

    def start(url):
        env = eventsourcing_env(url)
        ledger = Ledger(env)
        try:
            if role == "api":
                driver = DriverApiSettings(SecretBox.generate_setting("k1"), "https://charge.example.com")
                app = create_app(ledger, url, AuthSettings.generate(), pool_size=2, driver=driver)
                app.state.pool.close()
            elif role == "gateway":  # the gateway (its watchdog) with the relay beside it, as `chargeledger gateway`
                Gateway(ledger, database_url=url, nats_url=nats_url).executor.shutdown()
                Relay(ledger.applications, env, nats_url).tracking.datastore.close()
            elif role == "projections":
                Projections(ledger.applications, env).close()
            elif role == "relay":
                Relay(ledger.applications, env, nats_url).tracking.datastore.close()
        finally:
            ledger.close()

    print("ready", flush=True)
    for line in sys.stdin:
        try:
            start(line.strip())
            print("ok", flush=True)
        except Exception:
            print("error " + json.dumps(traceback.format_exc()), flush=True)
""")


def test_every_role_starts_beside_every_other_on_an_empty_database(servers: tuple[str, str]) -> None:
    server_url, nats_url = servers
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, role, nats_url], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True) for role in ROLES]
    names = [f"t_start_{uuid.uuid4().hex[:8]}" for _ in range(ROUNDS)]
    failures = []
    try:
        for w in workers:
            assert w.stdout is not None and w.stdout.readline().strip() == "ready"
        for name in names:
            url = create_database(server_url, name)
            for w in workers:  # release them together
                assert w.stdin is not None
                w.stdin.write(url + "\n")
                w.stdin.flush()
            for role, w in zip(ROLES, workers):
                answer = w.stdout.readline().strip()  # type: ignore[union-attr]
                if answer != "ok":
                    failures.append((name, role, json.loads(answer[6:]) if answer.startswith("error ") else answer))
    finally:
        for w in workers:
            w.stdin.close()  # type: ignore[union-attr]
            w.wait(30)
        with psycopg.connect(server_url, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert failures == [], "\n".join(f"{name} {role}:\n{error}" for name, role, error in failures)
