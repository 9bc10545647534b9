"""We as customer platform (客户归属运营商): our drivers on an infrastructure peer's piles.

    catalogue.py  pulling a peer's stations, connector statuses and business policies into
                  ``store/peer_catalogue.py`` (``chargeledger peers pull``, and the outbox role every
                  ``--pull-interval``)
    browse.py     that catalogue as our driver API shows it (stations near a place, a station's
                  connectors with the price now)

What the peer pushes us is received by ``handlers/notifications.py``.
"""
