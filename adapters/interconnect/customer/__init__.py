"""We as customer platform (客户归属运营商): our drivers on an infrastructure peer's piles.

    catalogue.py  pulling a peer's stations, connector statuses and business policies into
                  ``store/peer_catalogue.py`` (``chargeledger peers pull``, and the outbox role every
                  ``--pull-interval``)
    browse.py     that catalogue as our driver API shows it (stations near a place, a station's
                  connectors with the price now)
    sessions.py   start, watch and stop a roaming charge for a driver (``query_start_charge``,
                  ``query_equip_charge_status``, ``query_stop_charge``); the hold and the charge are the
                  ledger's (``domain/roaming.py``)
    arrivals.py   what the peer's pushes do to our charges (a start result moves one on, an order settles
                  it against the driver's hold, owed on ``payable:<OperatorID>``; the daily check)
    reconcile.py  the charges whose start or stop got no trustworthy answer, asked about again
    driver_api.py the driver API's roaming charges, mounted with the T/CEC door
    shards.py     the catalogue and the roaming charges per tenant shard, each driver's call on their tenant's

What the peer pushes us is received by ``handlers/notifications.py``.
"""
