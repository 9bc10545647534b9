"""The interconnect's DDL, created by every role that serves or calls T/CEC, under the schema lock."""

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
)


def create_schema(pool: Any) -> None:
    """Create the tables (a psycopg ``ConnectionPool``); safe beside any other role starting."""
    with pool.connection() as conn:
        create_tables(conn, *DDL)
