"""The interconnect's DDL, created by every role that serves or calls T/CEC, under the schema lock.

Peers, tokens and envelopes (store/peers.py, tokens.py, seen.py); what we serve as infrastructure
operator: the starts made for peers (starts.py), the stations' T/CEC details (profiles.py), the
outbox of pushes with its follower's state and the disputes peers answered (outbox.py), the stations as
the outbox's station follower folded them and the orders pushed to each regulator (outbox/stations.py,
outbox/regulated.py); what we receive as customer platform (received.py) and the catalogue of an
infrastructure peer's stations and connectors our drivers browse (peer_catalogue.py), and our
drivers' roaming charges still waiting for a peer (roaming.py).
"""

from __future__ import annotations

from typing import Any

from adapters.postgres.env import create_tables

DDL = (
    """CREATE TABLE IF NOT EXISTS tcec_peers (
    peer_id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    operator_id text NOT NULL,
    our_operator_id text NOT NULL,
    name text NOT NULL,
    base_url text NOT NULL,
    role text NOT NULL CHECK (role IN ('customer', 'regulator', 'infrastructure')),
    dialect text NOT NULL CHECK (dialect IN ('tcec2016', 'service', 'xiaoju')),
    token_lifetime integer NOT NULL CHECK (token_lifetime BETWEEN 60 AND 604800),
    status_interval integer NOT NULL DEFAULT 60 CHECK (status_interval BETWEEN 0 AND 3600),
    enabled boolean NOT NULL DEFAULT true,
    inbound_sealed text NOT NULL,
    outbound_sealed text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, operator_id))""",
    "CREATE INDEX IF NOT EXISTS tcec_peers_operator ON tcec_peers (operator_id)",
    """CREATE TABLE IF NOT EXISTS tcec_tokens_issued (
    token_hash bytea PRIMARY KEY,
    peer_id uuid NOT NULL REFERENCES tcec_peers ON DELETE CASCADE,
    sealed text NOT NULL,
    issued_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS tcec_tokens_issued_peer ON tcec_tokens_issued (peer_id, expires_at)",
    """CREATE TABLE IF NOT EXISTS tcec_tokens_held (
    peer_id uuid PRIMARY KEY REFERENCES tcec_peers ON DELETE CASCADE,
    sealed text NOT NULL,
    obtained_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS tcec_envelopes_seen (
    peer_id uuid NOT NULL REFERENCES tcec_peers ON DELETE CASCADE,
    fingerprint bytea NOT NULL,
    keep_until timestamptz NOT NULL,
    PRIMARY KEY (peer_id, fingerprint))""",
    "CREATE INDEX IF NOT EXISTS tcec_envelopes_seen_until ON tcec_envelopes_seen (keep_until)",
    # the seconds between two notification_equip_charge_status of a charging session (0: none)
    "ALTER TABLE tcec_peers ADD COLUMN IF NOT EXISTS status_interval integer NOT NULL DEFAULT 60 "
    "CHECK (status_interval BETWEEN 0 AND 3600)",
    # the last call of the peer answered Ret 0, at most a minute old (Peers.mark_inbound; link health)
    "ALTER TABLE tcec_peers ADD COLUMN IF NOT EXISTS last_inbound_at timestamptz",
    """CREATE TABLE IF NOT EXISTS tcec_starts (
    peer_id uuid NOT NULL REFERENCES tcec_peers,
    start_charge_seq text NOT NULL,
    tenant_id uuid NOT NULL,
    connector_id text NOT NULL,
    trade_no text NOT NULL UNIQUE,
    session_id uuid NOT NULL UNIQUE,
    requested_at timestamptz NOT NULL,
    state text NOT NULL DEFAULT 'requested',
    charging_at timestamptz,
    start_pushed boolean NOT NULL DEFAULT false,
    stopped_by_peer boolean NOT NULL DEFAULT false,
    ended_at timestamptz,
    energy bigint,
    total_fen bigint,
    PRIMARY KEY (peer_id, start_charge_seq))""",
    "CREATE INDEX IF NOT EXISTS tcec_starts_ended ON tcec_starts (peer_id, ended_at)",
    "CREATE INDEX IF NOT EXISTS tcec_starts_charging ON tcec_starts (state) WHERE state = 'charging'",
    """CREATE TABLE IF NOT EXISTS tcec_station_profiles (
    station_id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    area_code text NOT NULL,
    service_tel text NOT NULL,
    station_type integer NOT NULL,
    construction integer NOT NULL,
    park_nums integer NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS tcec_outbox (
    id bigserial PRIMARY KEY,
    peer_id uuid NOT NULL REFERENCES tcec_peers ON DELETE CASCADE,
    key text NOT NULL,
    interface text NOT NULL,
    stream text,
    payload text NOT NULL,
    created_at timestamptz NOT NULL,
    due timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    state text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'delivered', 'ignored', 'superseded', 'failed')),
    last_error text,
    delivered_at timestamptz,
    answer text,
    UNIQUE (peer_id, key))""",
    "CREATE INDEX IF NOT EXISTS tcec_outbox_due ON tcec_outbox (due) WHERE state = 'pending'",
    "CREATE INDEX IF NOT EXISTS tcec_outbox_stream ON tcec_outbox (peer_id, stream, id) WHERE state = 'pending'",
    "CREATE INDEX IF NOT EXISTS tcec_outbox_answered ON tcec_outbox (created_at) WHERE state <> 'pending'",
    "CREATE TABLE IF NOT EXISTS tcec_outbox_tracking (application text PRIMARY KEY, position bigint NOT NULL)",
    """CREATE TABLE IF NOT EXISTS tcec_piles (
    pile_id uuid PRIMARY KEY,
    pile_no text NOT NULL,
    tenant_id uuid NOT NULL,
    enabled boolean NOT NULL,
    online boolean NOT NULL,
    guns jsonb NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS tcec_disputes (
    peer_id uuid NOT NULL REFERENCES tcec_peers ON DELETE CASCADE,
    source text NOT NULL,
    start_charge_seq text NOT NULL,
    reason integer NOT NULL,
    total_power text,
    total_money text,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (peer_id, source, start_charge_seq))""",
    # the catalogue facts the outbox pushes to regulators (notification_stationInfo), folded from the Registry
    # in the transaction of the station follower's own position (outbox/stations.py)
    """CREATE TABLE IF NOT EXISTS tcec_stations (
    station_id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    name text NOT NULL,
    address text NOT NULL,
    latitude double precision NOT NULL,
    longitude double precision NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS tcec_stations_tenant ON tcec_stations (tenant_id, station_id)",
    """CREATE TABLE IF NOT EXISTS tcec_station_piles (
    pile_id uuid PRIMARY KEY,
    station_id uuid NOT NULL,
    pile_no text NOT NULL,
    kind text NOT NULL,
    gun_count integer NOT NULL,
    enabled boolean NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS tcec_station_piles_station ON tcec_station_piles (station_id, pile_no)",
    # every order pushed to a regulator, with what its daily check_charge_orders lists (outbox/regulated.py)
    """CREATE TABLE IF NOT EXISTS tcec_peer_orders (
    peer_id uuid NOT NULL REFERENCES tcec_peers ON DELETE CASCADE,
    start_charge_seq text NOT NULL,
    session_id uuid NOT NULL,
    ended_at timestamptz NOT NULL,
    energy bigint NOT NULL,
    total_fen bigint NOT NULL,
    PRIMARY KEY (peer_id, start_charge_seq))""",
    "CREATE INDEX IF NOT EXISTS tcec_peer_orders_ended ON tcec_peer_orders (peer_id, ended_at)",
    """CREATE TABLE IF NOT EXISTS tcec_received (
    id bigserial PRIMARY KEY,
    peer_id uuid NOT NULL REFERENCES tcec_peers ON DELETE CASCADE,
    interface text NOT NULL,
    key text NOT NULL,
    payload text NOT NULL,
    first_at timestamptz NOT NULL,
    last_at timestamptz NOT NULL,
    times integer NOT NULL DEFAULT 1,
    UNIQUE (peer_id, interface, key))""",
    # we as customer platform: an infrastructure peer's stations and connectors (store/peer_catalogue.py)
    """CREATE TABLE IF NOT EXISTS tcec_peer_stations (
    peer_id uuid NOT NULL REFERENCES tcec_peers ON DELETE CASCADE,
    station_id text NOT NULL,
    name text NOT NULL,
    address text NOT NULL,
    lng numeric(9, 6) NOT NULL,
    lat numeric(8, 6) NOT NULL,
    station_status integer NOT NULL,
    info text NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (peer_id, station_id))""",
    """CREATE TABLE IF NOT EXISTS tcec_peer_connectors (
    peer_id uuid NOT NULL REFERENCES tcec_peers ON DELETE CASCADE,
    connector_id text NOT NULL,
    station_id text,
    equipment_id text,
    name text,
    connector_type integer,
    power numeric(10, 4),
    status integer,
    status_at timestamptz,
    policy text,
    policy_at timestamptz,
    policy_error text,
    PRIMARY KEY (peer_id, connector_id))""",
    "CREATE INDEX IF NOT EXISTS tcec_peer_connectors_station ON tcec_peer_connectors (peer_id, station_id)",
    """CREATE TABLE IF NOT EXISTS tcec_peer_pulls (
    peer_id uuid PRIMARY KEY REFERENCES tcec_peers ON DELETE CASCADE,
    claimed_at timestamptz,
    complete_from timestamptz,
    finished_at timestamptz,
    complete boolean,
    report text)""",
    # we as customer platform: our drivers' roaming charges still waiting for the peer (store/roaming.py)
    """CREATE TABLE IF NOT EXISTS tcec_roaming (
    charge_id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    peer text NOT NULL,
    start_charge_seq text NOT NULL,
    connector_id text NOT NULL,
    state text NOT NULL,
    changed_at timestamptz NOT NULL,
    next_check timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 0)""",
    "CREATE INDEX IF NOT EXISTS tcec_roaming_due ON tcec_roaming (next_check)",
)


def create_schema(pool: Any) -> None:
    """Create the tables (a psycopg ``ConnectionPool``); safe beside any other role starting."""
    with pool.connection() as conn:
        create_tables(conn, *DDL)
