"""The console's language: Chinese unless the request says English.

``?lang=en`` (or ``zh``) on any page chooses, and the answer remembers it in the ``lang`` cookie;
without either the page is Chinese. Accept-Language is not read: the operators this serves work in
Chinese, and an English page is asked for, not guessed.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape
from starlette.requests import Request

from adapters.web.catalogue import MESSAGES

LANGUAGES = ("zh", "en")
DEFAULT = "zh"
COOKIE = "lang"


def chosen(request: Request) -> str | None:
    """The language the query string asks for, if it asks for one we have."""
    asked = request.query_params.get("lang")
    return asked if asked in LANGUAGES else None


def language(request: Request) -> str:
    remembered = request.cookies.get(COOKIE)
    return chosen(request) or (remembered if remembered in LANGUAGES else DEFAULT)


def message(lang: str, key: str, **fields: Any) -> str:
    """The message ``key`` in ``lang``; KeyError for a key the catalogue lacks."""
    text = MESSAGES[key][LANGUAGES.index(lang)]
    return text.format(**fields) if fields else text


class Translator:
    """``_`` in the templates: the message, with its fields escaped first (the message itself is ours)."""

    def __init__(self, lang: str) -> None:
        self.lang = lang

    def __call__(self, key: str, **fields: Any) -> Markup:
        return Markup(message(self.lang, key, **{k: escape(v) for k, v in fields.items()}))  # noqa: S704
