"""We as customer platform (客户归属运营商): our drivers on an infrastructure peer's piles.

* ``sessions.py``: start, watch and stop a roaming charge for a driver (``query_start_charge``,
  ``query_equip_charge_status``, ``query_stop_charge``), the hold and the charge in the ledger
  (``domain/roaming.py``);
* ``arrivals.py``: what the peer's pushes do to our charges (the start result, the order that settles
  the charge against the driver's hold and owes it on ``payable:<OperatorID>``, the daily check);
* ``reconcile.py``: the charges whose start or stop got no trustworthy answer, asked again;
* ``driver_api.py``: the driver API's roaming endpoints, mounted with the T/CEC door.
"""
