"""The pushes we owe peers as their infrastructure operator, through a durable outbox (docs/interconnect.md,
"The outbox", "Regulators"): ``chargeledger tcec-outbox`` runs them.

    follower.py   follows the Registry and Sessions logs into ``tcec_outbox`` (gun statuses: guns.py;
                  a session's start result, stop result and order: sessions.py; every closed session's
                  order for regulators: regulated.py; stations' entries for regulators: stations.py), in
                  the same transaction as its position in each log
    schedule.py   the charge status of charging sessions at each peer's interval; the daily check; the
                  regulators' daily station entries
    sender.py     delivers due rows with the client, retries with a growing pause, reads the answers
    role.py       the three in one loop
"""
