"""Every refusal of the HTTP API has the same body, ``{"code": ..., "message": ..., "details": ...}``:

* 422 ``validation_error`` (pydantic; ``details`` lists the fields),
* 401 ``missing_token`` / ``invalid_token`` / ``token_expired`` / ``token_revoked`` / ``user_disabled`` /
  ``bad_credentials``,
* 403 ``wrong_token_role`` (e.g. a driver token at the operator API) / ``forbidden_role`` / ``wrong_password``,
* 404 ``not_found`` (also for another tenant's ids, so ids cannot be probed),
* 409 a domain rule's own code (``domain.errors``: ``invalid_state_transition``, ``insufficient_funds``...),
* 413 ``body_too_large``, 429 ``too_many_attempts`` and 503 ``login_busy`` (both with Retry-After).

Routers raise :class:`ApiError` (a refusal decided in the adapter), ``AuthError`` or a domain error;
:func:`add_error_handlers` (called by ``adapters.api.app.create_app``) turns each into that body.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters.api.auth import AuthError
from adapters.api.inputs import error as error_body
from domain.errors import DomainError, InvalidText, NotFound


class ApiError(Exception):
    """A refusal decided in the adapter (scope, role, bad cursor), with its stable code."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def add_error_handlers(app: FastAPI) -> None:
    """Answer every refusal ``app`` meets with the body above."""

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
        status = 404 if isinstance(exc, NotFound) else 422 if isinstance(exc, InvalidText) else 409
        return JSONResponse(error_body(exc.code, exc.message, exc.details or None), status_code=status)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, exc.details or None), status_code=exc.status)

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        return JSONResponse(error_body("validation_error", "the request is not valid", details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)
