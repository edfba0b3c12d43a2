"""Check a login's credentials behind the login throttle: the one place that does it.

:class:`~singlemalt.middleware.SingleMalt` calls :func:`check_credentials`
for every request that carries credentials, and so can a sign-in form (a web
login page that starts a session): both then get the same lockouts, the same
check budget and the same failure counts, so guessing through the form is
no cheaper than guessing through ``Authorization``::

    result = check_credentials(verifier, BasicCredentials(name, password),
                               address=client_address, throttle=throttle)
    if isinstance(result, SignInRefused):
        answer(result.failure, result.reason, result.retry_after)   # 429, 503 or "wrong password"
    else:
        start_session(result.username)                               # an Identity

The steps, in order: the throttle admits the login or says it is locked out
(:attr:`SignInFailure.LOCKED`, nothing checked); for credentials not known from an
address that keeps failing, a slow check spends from the worker's budget
(:attr:`SignInFailure.BUSY` when it is spent, nothing checked); the verifier
checks; a failure is counted against the address and the account
(:attr:`SignInFailure.INVALID`); a success is remembered as known from the
address. A store that cannot answer (:class:`~singlemalt.authorize.Unavailable`)
is :attr:`SignInFailure.UNAVAILABLE` and counts as neither.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass

from singlemalt.authorize import Unavailable
from singlemalt.credentials import BasicCredentials, Credentials
from singlemalt.identity import Identity
from singlemalt.throttle import LoginThrottle
from singlemalt.verify import TooManyChecks, Verifier

#: What a client hears when the worker's budget of slow checks is spent, and when to retry.
BUSY_REASON = "too many sign-ins with new credentials from your address; retry in a few seconds"
BUSY_RETRY_AFTER = 2


class SignInFailure(enum.Enum):
    """Why a login did not succeed; each is answered differently."""

    #: The throttle locks this login out (too many failures): 429 until ``retry_after``.
    LOCKED = "locked"
    #: The worker's budget of slow checks for this address is spent: 429, retry in a moment.
    BUSY = "busy"
    #: The credential store cannot answer now: 503; not a failed login.
    UNAVAILABLE = "unavailable"
    #: Wrong credentials; counted as a failed login.
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class SignInRefused:
    """A login that did not succeed: why, a reason a user may read, and when to retry (None: at will)."""

    failure: SignInFailure
    reason: str
    retry_after: int | None = None


def check_credentials(
    verifier: Verifier,
    credentials: Credentials,
    *,
    address: str,
    throttle: LoginThrottle | None = None,
) -> Identity | SignInRefused:
    """The identity ``credentials`` prove, from a client at ``address``, or why not.

    ``throttle`` (None: no lockouts) counts failures under the address and,
    for Basic credentials, the username they name. Never raises for a
    refusal: the caller renders it (the middleware as 401, 429 or 503).
    """
    username = credentials.username if isinstance(credentials, BasicCredentials) else None
    permit = None
    if throttle is not None:
        admission = throttle.admit(address, username, credentials)
        if admission.locked:
            return SignInRefused(SignInFailure.LOCKED, "too many failed logins", throttle.lockout)
        if admission.budgeted:
            # Credentials never seen to work from an address that keeps
            # failing: a guess costs a slow check only while this worker's
            # budget lasts.
            permit = functools.partial(throttle.may_check, address)
    try:
        identity = verifier.verify(credentials, permit=permit)
    except Unavailable as error:
        # Nothing was decided: not a failed login, and not a success.
        return SignInRefused(SignInFailure.UNAVAILABLE, error.reason, error.retry_after)
    except TooManyChecks:
        return SignInRefused(SignInFailure.BUSY, BUSY_REASON, BUSY_RETRY_AFTER)
    if identity is None:
        if throttle is not None:
            throttle.record_failure(address, username)
        return SignInRefused(SignInFailure.INVALID, "invalid credentials")
    if throttle is not None:
        throttle.passed(address, credentials)
    return identity
