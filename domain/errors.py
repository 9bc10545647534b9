"""Domain errors with stable codes.

Every rule the domain refuses raises a subclass of :class:`DomainError`. The API maps them to
409 (or 404 for ``NotFound``) with ``code`` as the stable machine-readable reason; the message is
for people. A command that raises has written nothing: aggregates raise before they trigger events.
"""

from __future__ import annotations


class DomainError(Exception):
    code = "domain_error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, **({"details": self.details} if self.details else {})}


class NotFound(DomainError):
    code = "not_found"


class AlreadyExists(DomainError):
    code = "already_exists"


class InvalidTariff(DomainError):
    code = "invalid_tariff"


class InvalidAmount(DomainError):
    code = "invalid_amount"


class InsufficientFunds(DomainError):
    code = "insufficient_funds"


class CaptureExceedsHold(DomainError):
    code = "capture_exceeds_hold"


class UnknownHold(DomainError):
    code = "unknown_hold"


class UnknownRefund(DomainError):
    code = "unknown_refund"


class IdempotencyConflict(DomainError):
    """The idempotency key was used before with different arguments."""

    code = "idempotency_conflict"


class InvalidTransition(DomainError):
    code = "invalid_state_transition"


class InvalidRegistration(DomainError):
    code = "invalid_registration"


class InvalidText(DomainError):
    """A name, address or reason the ledger will not store (see :mod:`domain.text`)."""

    code = "invalid_text"


class PileUnavailable(DomainError):
    code = "pile_unavailable"


class ConcurrencyExhausted(DomainError):
    """Optimistic concurrency retries ran out: the aggregate is too hot right now."""

    code = "concurrency_exhausted"


class WrongPile(DomainError):
    """A pile named a session, a serial or a gun that is not its own (the pile link's boundary)."""

    code = "wrong_pile"
