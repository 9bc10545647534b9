"""Pages rendered on the server: one Jinja2 environment (autoescape on, undefined names are errors),
the layout's context, and the filters that show money and time as the ledger means them.

* ``yuan``: fen (integers) as yuan with two decimals through ``domain.money.fen_to_yuan_str``: never a float.
* ``local``: an instant (stored in UTC) in a time zone, normally the station's (``catalogue_stations``
  .timezone, Asia/Shanghai unless set), as ``YYYY-MM-DD HH:MM:SS``.
* ``kwh``: energy in 0.0001 kWh as kWh.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request

from adapters.api.auth import TENANT_ADMIN, Principal
from adapters.web import i18n
from adapters.web.session import csrf_token
from domain.money import energy_to_kwh_str, fen_to_yuan_str

PREFIX = "/console"
HERE = Path(__file__).resolve().parent
DEFAULT_ZONE = "Asia/Shanghai"

# the layout's navigation: (message key, path); a page marks its own with ``nav=`` in render()
NAV = (("nav.overview", "/"), ("nav.stations", "/stations"), ("nav.piles", "/piles"), ("nav.tariffs", "/tariffs"),
       ("nav.orders", "/orders"), ("nav.revenue", "/revenue"), ("nav.alarms", "/alarms"),
       ("nav.oplog", "/operation-log"), ("nav.users", "/users"), ("nav.peers", "/peers"),
       ("nav.screen", "/screen"))
# links shown only to these roles (their pages refuse the others with 403 anyway): a peer link is the tenant's
NAV_ROLES = {"/peers": (TENANT_ADMIN,)}


def nav_for(who: Principal | None) -> tuple[tuple[str, str], ...]:
    """The navigation ``who`` is shown."""
    return tuple((key, path) for key, path in NAV
                 if path not in NAV_ROLES or (who is not None and who.role in NAV_ROLES[path]))


def yuan(fen: int | None) -> str:
    return "" if fen is None else fen_to_yuan_str(int(fen))


def kwh(energy: int | None) -> str:
    return "" if energy is None else energy_to_kwh_str(int(energy))


def local(instant: datetime | str | None, zone: str | None = None, seconds: bool = True) -> str:
    if instant is None or instant == "":
        return ""
    if isinstance(instant, str):
        instant = datetime.fromisoformat(instant)
    shown = instant.astimezone(ZoneInfo(zone or DEFAULT_ZONE))
    return shown.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def url(path: str, **query: Any) -> str:
    """A console URL: ``url("/stations", station=s)`` -> ``/console/stations?station=s``."""
    shown = {k: v for k, v in query.items() if v is not None}
    return PREFIX + path + ("?" + urlencode(shown) if shown else "")


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(yuan=yuan, kwh=kwh, local=local)
    env.globals.update(url=url)
    return env


ENV = _environment()


def context(request: Request, who: Principal | None, nav: str | None) -> dict[str, Any]:
    lang = i18n.language(request)
    other = "en" if lang == "zh" else "zh"
    switch = request.url.path + "?" + urlencode({**dict(request.query_params), "lang": other})
    return {"request": request, "lang": lang, "_": i18n.Translator(lang), "who": who, "nav": nav,
            "nav_items": nav_for(who), "csrf": csrf_token(request), "switch_language": switch,
            "path": request.url.path}


def render(request: Request, template: str, who: Principal | None = None, *, nav: str | None = None,
           status: int = 200, **values: Any) -> Response:
    """The page ``template`` in the request's language; remembers a language chosen by ``?lang=``."""
    html = ENV.get_template(template).render(**context(request, who, nav), **values)
    return remember_language(request, HTMLResponse(html, status_code=status))


def fragment(request: Request, template: str, **values: Any) -> str:
    """A piece of a page (a table row for the live stream) in the request's language."""
    return ENV.get_template(template).render(**context(request, None, None), **values)


def remember_language(request: Request, response: Response) -> Response:
    if (asked := i18n.chosen(request)) is not None:
        response.set_cookie(i18n.COOKIE, asked, max_age=365 * 86400, httponly=True, samesite="lax",
                            secure=request.url.scheme == "https", path="/")
    return response


def see_other(path: str) -> RedirectResponse:
    """After a form: 303 to ``path`` (already a console URL), so a reload does not post again."""
    return RedirectResponse(path, status_code=303)


def own_page(target: str | None, root: str) -> str:
    """Where to go back to after signing in: ``target`` when it is a path of ours under ``root``, never
    another site (``//evil``, ``/\\evil``); else ``root``'s home."""
    if target and target.startswith(root + "/") and "//" not in target and "\\" not in target:
        return target
    return root + "/"


def sign_in_first(request: Request, login: str) -> Response:
    """Sign in first, at ``login``: a page is redirected there and comes back after it (a GET names itself
    as ``next``); an htmx request is told where to go (HX-Redirect)."""
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": login})
    target = login
    if request.method == "GET":
        target += "?next=" + quote(request.url.path + ("?" + request.url.query if request.url.query else ""), safe="")
    return RedirectResponse(target, status_code=303)
