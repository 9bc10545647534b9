"""The field spellings of T/CEC 102 in the field: accepted in either form, sent in the peer's.

The 2016 text misspells four fields ``SevicePrice``, ``SeviceMoney``, ``DetailSeviceMoney``,
``TotalSeviceMoney`` (no "r"), and real payloads use them; Xiaoju's contract, a widely copied
dialect, spells them ``Service*`` and also writes ``ElectMoney`` (not ``ElecMoney``) in
``query_equip_charge_status``. A few documents print ``EquipmentMode`` for ``EquipmentModel``.

* **Input** (:func:`canonical`): every such spelling, in any object at any depth, is renamed to the
  2016 one the models use; a payload carrying both spellings of one field with different values is
  refused (:class:`DialectError`), one carrying both with the same value is taken.
* **Output** (:func:`spelled`): the canonical names are renamed to the peer's :class:`Dialect`,
  chosen per peer when it is configured: ``tcec2016`` (the standard's own spelling, the default),
  ``service`` (``Service*`` everywhere), ``xiaoju`` (``Service*``, and ``ElectMoney`` only in the
  ``query_equip_charge_status`` answer, as its contract has it).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

# other spelling -> the 2016 spelling the models use
ALIASES: dict[str, str] = {
    "ServicePrice": "SevicePrice",
    "ServiceMoney": "SeviceMoney",
    "DetailServiceMoney": "DetailSeviceMoney",
    "TotalServiceMoney": "TotalSeviceMoney",
    "ElectMoney": "ElecMoney",
    "EquipmentMode": "EquipmentModel",
}
SERVICE = {"SevicePrice": "ServicePrice", "SeviceMoney": "ServiceMoney", "DetailSeviceMoney": "DetailServiceMoney",
           "TotalSeviceMoney": "TotalServiceMoney"}  # the 2016 spelling -> Service*


class DialectError(ValueError):
    """A payload that spells one field twice, differently."""


class Dialect(str, Enum):
    TCEC2016 = "tcec2016"
    SERVICE = "service"
    XIAOJU = "xiaoju"

    def renames(self, interface: str) -> dict[str, str]:
        """canonical -> sent, for a payload of ``interface`` (a request we send or an answer we give)."""
        if self is Dialect.TCEC2016:
            return {}
        names = dict(SERVICE)
        if self is Dialect.XIAOJU and interface == "query_equip_charge_status":
            names["ElecMoney"] = "ElectMoney"
        return names


def canonical(value: Any) -> Any:
    """``value`` with every known alternative spelling renamed to the 2016 one (see the module)."""
    if isinstance(value, list):
        return [canonical(item) for item in value]
    if not isinstance(value, Mapping):
        return value
    result: dict[str, Any] = {}
    for key, item in value.items():
        name = ALIASES.get(key, key)
        item = canonical(item)
        if name in result and result[name] != item:
            raise DialectError(f"{name} is sent twice with different values (as {name} and as its other spelling)")
        result[name] = item
    return result


def spelled(value: Any, names: Mapping[str, str]) -> Any:
    """``value`` with its canonical names renamed by ``names`` (from :meth:`Dialect.renames`)."""
    if not names:
        return value
    if isinstance(value, list):
        return [spelled(item, names) for item in value]
    if isinstance(value, Mapping):
        return {names.get(key, key): spelled(item, names) for key, item in value.items()}
    return value
