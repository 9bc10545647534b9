"""The tariff editor's form: 48 half-hour slot fields and 8 prices in yuan, read into the API's own
request models, with every refusal put at the field it is about.

Fields: ``name`` (a new tariff only), ``slot-0`` … ``slot-47`` (``sharp``/``peak``/``flat``/``valley``,
slot 0 = 00:00-00:30 in the station's local day) and ``price-<tier>-<electricity|service>`` in
yuan/kWh. Prices are turned into the ledger's unit (0.00001 yuan/kWh) by ``domain.money
.yuan_str_to_price``; everything else is checked where the API checks it: the request model
(``TariffRequest`` / ``TariffRevision``: present, in range, a known tier) and the domain
(``TariffSchedule.build``, whose ``InvalidTariff`` names its slot, tier or field). No rule is
written here a second time.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from adapters.web.forms import Invalid
from domain.errors import DomainError
from domain.money import price_to_yuan_str, yuan_str_to_price
from domain.tariff import SLOTS_PER_DAY, TIERS, slot_label

KINDS = ("electricity", "service")
DEFAULT_TIER = "flat"
Body = TypeVar("Body", bound=BaseModel)


def slot_field(i: int) -> str:
    return f"slot-{i}"


def price_field(tier: str, kind: str) -> str:
    return f"price-{tier}-{kind}"


def short_price(price: int) -> str:
    """A unit price in yuan/kWh with 2 to 5 decimals: 120000 -> '1.20', 123450 -> '1.2345'."""
    text = price_to_yuan_str(price)
    while text.endswith("0") and len(text.split(".")[1]) > 2:
        text = text[:-1]
    return text


def slots_of(schedule: dict[str, Any]) -> list[str]:
    return [TIERS[i] for i in schedule["slots"]]


def form_of(schedule: dict[str, Any] | None, name: str = "") -> dict[str, str]:
    """The editor's fields for a schedule (a tariff's current one), or a blank one (every slot flat)."""
    form = {"name": name}
    tiers = slots_of(schedule) if schedule else [DEFAULT_TIER] * SLOTS_PER_DAY
    form.update({slot_field(i): tier for i, tier in enumerate(tiers)})
    for tier in TIERS:
        for kind in KINDS:
            form[price_field(tier, kind)] = short_price(schedule["prices"][tier][kind]) if schedule else ""
    return form


def strip(form: dict[str, str]) -> list[dict[str, Any]]:
    """The 48 cells the editor shows: index, field, its half hour, and the tier the form holds."""
    return [{"index": i, "field": slot_field(i), "label": slot_label(i), "start": slot_label(i)[:5],
             "tier": form.get(slot_field(i), "")} for i in range(SLOTS_PER_DAY)]


def field_of(loc: tuple[Any, ...]) -> str:
    """The form field a request model's error location is about."""
    if not loc:
        return "form"
    if loc[0] == "slots":
        return slot_field(loc[1]) if len(loc) > 1 and isinstance(loc[1], int) else "slots"
    if loc[0] == "prices":
        if len(loc) > 2 and loc[1] in TIERS and loc[2] in KINDS:
            return price_field(str(loc[1]), str(loc[2]))
        return price_field(str(loc[1]), KINDS[0]) if len(loc) > 1 and loc[1] in TIERS else "prices"
    return str(loc[0])


def field_of_refusal(error: DomainError) -> str | None:
    """The form field the domain's refusal names (its details: slot, tier and price, or field), if any."""
    details = error.details
    if isinstance(details.get("slot"), int):
        return slot_field(details["slot"])  # type: ignore[arg-type]
    if details.get("tier") in TIERS and details.get("price") in KINDS:
        return price_field(str(details["tier"]), str(details["price"]))
    field = details.get("field")
    return str(field) if field else None


def read(model: type[Body], form: dict[str, str], with_name: bool) -> Body:
    """The request ``model`` from the editor's form, or ``Invalid`` with a message per field."""
    errors: dict[str, str] = {}
    prices: dict[str, dict[str, int]] = {}
    for tier in TIERS:
        prices[tier] = {}
        for kind in KINDS:
            name = price_field(tier, kind)
            raw = form.get(name, "").strip()
            if raw == "":
                continue  # the model says it is required
            try:
                prices[tier][kind] = yuan_str_to_price(raw)
            except ValueError as exc:
                errors[name] = str(exc)
    body: dict[str, Any] = {"prices": prices, "slots": [form.get(slot_field(i)) for i in range(SLOTS_PER_DAY)]}
    if with_name:
        body["name"] = form.get("name", "")
    try:
        checked = model.model_validate(body)
    except ValidationError as exc:
        for e in exc.errors():
            name = field_of(tuple(e["loc"]))
            if name.startswith("slot-") or name not in errors:  # a slot's last message names the tiers
                errors[name] = e["msg"]
        raise Invalid(errors) from None
    if errors:
        raise Invalid(errors)
    return checked
