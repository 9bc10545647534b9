"""The pushes we owe peers as their infrastructure operator, through a durable outbox (docs/interconnect.md,
"The outbox"): ``chargeledger tcec-outbox`` runs them.

    follower.py   follows the Registry and Sessions logs into ``tcec_outbox`` (gun statuses: guns.py;
                  a session's start result, stop result and order: sessions.py), in the same
                  transaction as its position in each log
    schedule.py   the charge status of charging sessions at each peer's interval; the daily check
    sender.py     delivers due rows with the client, retries with a growing pause, reads the answers
    role.py       the three in one loop
"""
