"""Observability: what every role counts, how it is served, and what every log line carries.

``instruments.py`` defines every metric once, on one registry per process; ``cached.py`` serves the
figures that need a query (lags, depths, the books) from a short cache, so a scrape never costs more
than one query batch every few seconds; ``exporter.py`` is the small HTTP server a role runs on its
``--metrics-port`` (``/metrics``, ``/healthz``, ``/readyz``); ``checks.py`` the readiness checks
(Postgres, NATS); ``logs.py`` the logging setup (JSON lines with ``LOG_FORMAT=json``) and the pile,
session and tenant each line carries. The floor of ``adapters``: it imports nothing of ours, so
every package may count. docs/operations.md, "Metrics and alarms to watch", says what each means.
"""
