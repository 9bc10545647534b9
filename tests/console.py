"""What the console's tests share: the API app with the pages mounted, a signed-in browser-less client,
and reading a page's CSRF token and scripts."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from adapters.api.app import create_app
from adapters.api.auth import TENANT_ADMIN, AuthSettings
from adapters.web.mount import mount
from adapters.web.session import WebSettings
from tests.operator_tokens import PASSWORD, operator_token

FAST = WebSettings(stream_poll=0.2)


def console_app(ledger: Any, database_url: str, settings: WebSettings = FAST, **kw: Any) -> Any:
    """``create_app`` with the pages mounted, as ``chargeledger api`` serves it."""
    return mount(create_app(ledger, database_url, AuthSettings.generate(), pool_size=4, **kw), settings)


def operator_user(app: Any, name: str, role: str, tenant_id: UUID | None = None,
                  stations: list[UUID] | None = None) -> str:
    """An operator user ``name`` whose password is tests/operator_tokens.PASSWORD; returns the name."""
    operator_token(app, role, tenant_id, stations, subject=name)
    return name


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def signed_in(app: Any, name: str, role: str, tenant_id: UUID | None = None,
              stations: list[Any] | None = None) -> Any:
    """A TestClient signed in to the console as a new operator user ``name``."""
    from fastapi.testclient import TestClient

    operator_user(app, name, role, tenant_id, stations)
    client = TestClient(app)
    assert sign_in(client, name).status_code == 303
    return client


@dataclass
class TwoTenants:
    """A console app with the views running beside it and two tenants, A and B (integration tests)."""

    app: Any
    client: Any
    projections: Any
    ledger: Any
    a: Any
    b: Any

    def signed_in(self, name: str, role: str = TENANT_ADMIN, tenant: Any = None,
                  stations: list[Any] | None = None) -> Any:
        """A client signed in as a new operator user of ``tenant`` (default A)."""
        return signed_in(self.app, name, role, (tenant or self.a).tenant_id, stations)


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def sign_in(client: Any, username: str, password: str = PASSWORD) -> Any:
    """Sign in through the login form (as a browser would); returns the answer (303 when it worked)."""
    page = client.get("/console/login")
    return client.post("/console/login", data={"username": username, "password": password,
                                               "csrf": csrf_of(page.text), "next": "/console/"},
                       follow_redirects=False)


class Scripts(HTMLParser):
    """Every script of a page, every inline handler (on*=) and inline style: the CSP forbids them."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.sources: list[str | None] = []
        self.inline: list[str] = []
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script":
            self.sources.append(names.get("src"))
            self._in_script = True
        if tag == "style":
            self.inline.append("<style>")
        for name, value in attrs:
            if name.startswith("on") or name == "style" or (value or "").strip().lower().startswith("javascript:"):
                self.inline.append(f"{tag} {name}={value}")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("inline script: " + data.strip()[:60])
