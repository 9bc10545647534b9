"""The relay: every event of every Application, from its notification log to NATS JetStream.

For each Application it reads the notification log after its own tracking position (kept in
Postgres, table ``relay_tracking``), publishes each event and waits for JetStream's ack before the
next one, then advances the tracking position after each batch. Consequences:

* nothing is lost: the position only moves past events JetStream has acknowledged;
* nothing is reordered: one event is in flight per Application at a time, and a relay publishes an
  event only once the one before it is on the stream;
* nothing is duplicated, at any delay: ``Nats-Msg-Id`` is ``<ledger>:<application>:<notification
  id>``, so a publish repeated within the stream's duplicate window (15 min) is dropped by the
  stream; and before it publishes anything (when it starts, takes over the lead, reconnects to NATS
  or recovers from any error) a relay reads the stream's last message of each Application
  (``chargeledger.<application>.>``) and, when it is this ledger's and ahead of the tracking
  position, moves the position there (``Relay.sync``). So the events a relay published but did
  not record before it died (up to a batch) are never published again, however late the next relay
  starts. ``<ledger>`` is a random id the database is given once (table ``ledger_identity``): a
  database recreated from empty numbers its events from 1 again, and without it the stream would
  drop its first events as repeats of the old database's.

**One leader.** Any number of relays may run (``chargeledger relay``, and one in every gateway):
only the one holding a Postgres session-level advisory lock (``RELAY_LOCK``, on a connection of
its own) publishes; the others are standbys and try to take the lock every ``standby_interval``
(1 s). Postgres lets the lock go when the leader's session ends, however the leader died (a kill -9
closes its sockets), so a standby takes over within about a second. The leader watches its lock
connection (``Lease``): when that connection breaks, or cannot be confirmed for
``lease_timeout``, it stops publishing at once (checked before every publish). A relay competes
for the lock only once NATS has accepted it as the relay (it made or updated the stream), so a
process with another role's NATS user never takes the lead from one that could publish.

**Outages.** Nothing stops it but ``Relay.stop``: a database or NATS outage of any length, an
error in a batch, even an unexpected exception, is logged (``... unavailable ...; retrying in``,
then ``... back after``) and retried with a growing pause (``retry_first``, doubled up to
``retry_max``). The counters a metrics exporter reads are in ``Relay.metrics``.

It does not wait on a timer for new events: it LISTENs on the channels the recorder NOTIFYs in
every save's transaction, so a commit wakes it at once (a start reaches its gateway in
milliseconds, not a poll interval later). A slow poll (``idle_sleep``, 1 s) stays as the fallback
for a notification missed while the listening connection was being re-established.

Subjects are ``chargeledger.<application>.<aggregate type>.<event name>``. The body is the event's
stored bytes, verbatim (the same bytes an auditor reads in Postgres); the headers carry the ids.

Modules (each logs as a child of ``adapters.followers.relay``):

* :mod:`.publisher` -- ``Relay``: standby, lead, sync, publish batches, the counters; ``keep_running``;
* :mod:`.leader` -- ``RELAY_LOCK``, the standby's wait for it, and the leader's ``Lease`` on it;
* :mod:`.stream` -- the JetStream side: subjects, message ids, headers, the ledger id, the stream;
* :mod:`.connection` -- the relay's NATS connection (reconnects, errors logged once, a stop ends a wait);
* :mod:`.waiting` -- pauses that a stop cuts short, and the LISTEN for commits that wakes the leader;
* :mod:`.errors` -- what the relay retries (database, NATS) and ``Stopped``.
"""
