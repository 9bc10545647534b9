"""Replay the ledger from its stored events alone and check the books.

Given every stored event of every Application in notification order, an :class:`Audit` rebuilds
each wallet and session, re-prices each session with the tariff version it kept, and checks what a
finance auditor needs proved:

========================  =====================================================================
check                     what a difference means
========================  =====================================================================
posting_sets_balance      a wallet event whose postings do not sum to zero
trial_balance             the sum over every account of every wallet is not zero
wallets_equal_live        a wallet rebuilt from its events differs from a snapshot the Wallets
                          Application stored (and loads from) at the same version; or from the
                          wallet the Application loads (snapshot + events), when asked to load it
sessions_reprice          a bill (Settled, Resettled, Abandoned) differs from pricing the
                          session's energy with its tariff version as the Tariffs log holds it;
                          the schedule a session kept differs from that version; a reading put
                          in the wrong tier; a wrong pile difference
sessions_match_wallets    what the wallet captured and charged for a trade differs from its bill
sessions_match_orders     a row of the order view differs from the session (or is missing)
holds_closed              a hold still open although its session is closed (or never placed)
topups_match_payments     a gateway top-up without a paid payment notification of the same
                          amount, wallet and provider (or a paid payment never credited);
                          unavailable on a ledger whose Payments log holds no payment at all
refunds_closed            a refund neither completed nor failed (past the in-flight grace)
========================  =====================================================================

Two ways to read the events, whose results tests prove equal (``tests/integration/test_audit_replay.py``,
``tests/unit/test_audit_mirror.py``):

* the **reference path** (``fast=False``) decodes each stored event with the Application's own
  mapper and applies it to the real aggregates (``Wallet``, ``ChargingSession``, ``Tariff``);
* the **fast path** (the default) decodes the stored JSON directly and applies it to small mirror
  records, about ten times cheaper per event, with the same functions the aggregates' event bodies
  call (:mod:`domain.changes`): every state change is written once.

Pure domain code: rows in, a report out. Reading Postgres is :mod:`adapters.audit.store`'s job.

==========  ======================================================================================
module      what it holds
==========  ======================================================================================
replay      :class:`Audit`: both paths, and what it records of each event for the checks
mirror      the fast path's wallet and session records; the views both paths must agree on
checks      the checks, while replaying and at the end; builds the report
report      :class:`AuditReport`, :class:`Difference`, :class:`EventRef`
stored      stored rows and their JSON: ``loads``, ``as_uuid``, ``as_iso``, ``plain``
==========  ======================================================================================
"""


from domain.audit.mirror import session_view, wallet_view
from domain.audit.replay import Audit, reference_mappers
from domain.audit.report import CHECKS, AuditReport, Difference, EventRef

__all__ = ["CHECKS", "Audit", "AuditReport", "Difference", "EventRef", "reference_mappers", "session_view",
           "wallet_view"]
