"""The operator console: web pages served by the API process (docs/console.md).

A door beside ``adapters.api``: it imports the API's sign-in, scope checks and query functions and
the lower layers, and the API never imports it. ``adapters.web.mount.mount(app)`` adds the pages to
the app ``adapters.api.app.create_app`` returns (``chargeledger api`` and the tests call it).

| module        | what it owns                                                                    |
|---------------|---------------------------------------------------------------------------------|
| mount.py      | WebSettings; mount(): the routers, static files, headers (CSP), error pages     |
| session.py    | the session cookie (the API's own signed operator token), CSRF, posted forms    |
| render.py     | Jinja2 (autoescape on), the layout's context, money and local-time filters      |
| i18n.py       | the language (Chinese by default; ``?lang=en`` / the ``lang`` cookie)           |
| catalogue.py  | every message in both languages, one dict                                        |
| pages/        | one module per group of pages: auth, home, stations, piles (with the live SSE)  |
| templates/    | base.html (the layout), error.html, one folder per group                         |
| static/       | app.css, app.js, vendor/ (htmx, its SSE extension, Alpine.js CSP build, ECharts) |
"""
