"""The relay: every event of every Application, from its notification log to NATS JetStream.

For each Application it reads the notification log after its own tracking position (kept in
Postgres, table ``relay_tracking``), publishes the events through a window of up to ``RELAY_WINDOW``
(500) events acknowledged at once (an atomic batch, :mod:`.window`), and advances the tracking position
after each batch to the last event acknowledged. Consequences:

* nothing is lost: the position only moves past events JetStream has acknowledged, and a window is
  stored whole or not at all;
* nothing is reordered: the events of a batch go out in their log's order on one connection, and a
  window's first event expects the last sequence on its shard's subjects of its Application
  (``Nats-Expected-Last-Subject-Sequence`` on ``chargeledger[.<shard>].<application>.>``), so a window
  after an event lost in flight, or after another relay of the shard published, is refused instead of
  being stored ahead of it; the relay then sends again from the gap. Other shards' relays publish on
  other subjects of the same stream and never trip it: every shard publishes through a full window;
* nothing is duplicated, at any delay: ``Nats-Msg-Id`` is ``<ledger>:<application>:<notification
  id>``, so a publish repeated within the stream's duplicate window (15 min) is dropped by the
  stream; and before it publishes anything (when it starts, takes over the lead, reconnects to NATS,
  a window broke off, or it recovers from any error) a relay reads the stream's last message of each
  Application on its shard's subjects (``chargeledger[.<shard>].<application>.>``) and, when it is this
ledger's and ahead of the tracking
  position, moves the position there (``Relay.sync``). So the events a relay published but did
  not record before it died (up to a batch) are never published again, however late the next relay
  starts. ``<ledger>`` is a random id the database is given once (table ``ledger_identity``): a
  database recreated from empty numbers its events from 1 again, and without it the stream would
  drop its first events as repeats of the old database's.

**Replicas.** The relay makes the stream (``CHARGELEDGER``, ``allow_atomic`` for its windows: nats-server
2.12 or later) and keeps its configuration: R3 on a NATS
cluster of 3 nodes or more (the server's INFO lists the nodes), R1 on a single server, or
``NATS_REPLICAS`` when set; it never shrinks the stream on its own (a node down when it connects).
``NATS_URL`` may name every node of a cluster, comma-separated.

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
* :mod:`.stream` -- the JetStream side: subjects, message ids, headers, the ledger id, the stream, its replicas;
* :mod:`.window` -- the guarded atomic batches in flight, and the events they acknowledge;
* :mod:`.connection` -- the relay's NATS connection (reconnects, errors logged once, a stop ends a wait);
* :mod:`.waiting` -- pauses that a stop cuts short, and the LISTEN for commits that wakes the leader;
* :mod:`.errors` -- what the relay retries (database, NATS) and ``Stopped``.
"""
