"""singlemalt: authentication and authorization middleware for WSGI apps.

It answers, for every request, "who is this?" (Basic passwords, access
tokens), "what do they want to do?" (a pluggable classifier; git and
Mercurial ones are included) and "may they?" (your authorizer), and only
then calls the wrapped app.  See ``singlemalt/README.md`` and
:mod:`singlemalt.middleware`.
"""

from singlemalt.authorize import Allowed, Authorizer, Decision, Denied, Unavailable
from singlemalt.cache import VerificationCache
from singlemalt.challenge import DEFAULT_DRAIN_LIMIT
from singlemalt.checkbudget import CheckBudget
from singlemalt.classify_git import classify_git
from singlemalt.classify_hg import classify_hg
from singlemalt.credentials import (
    BasicCredentials,
    BearerCredentials,
    Credentials,
    parse_authorization,
)
from singlemalt.identity import Identity, Scope
from singlemalt.judge import Outcome, Verdict, judge
from singlemalt.memcache import SafeMemcache
from singlemalt.middleware import SingleMalt
from singlemalt.passwords import PasswordHasher, hash_password
from singlemalt.proxy import Client, ProxyTrust
from singlemalt.sealed import Opened, Sealer
from singlemalt.signin import SignInFailure, SignInRefused, check_credentials
from singlemalt.store import CredentialStore, HtpasswdStore, TokenRecord, UserRecord
from singlemalt.target import Action, Classifier, Malformed, Target
from singlemalt.throttle import Admission, LoginThrottle, canonical_name
from singlemalt.tokens import IssuedToken, hash_token_secret, new_token, parse_token
from singlemalt.verify import TooManyChecks, Verifier

__all__ = [
    "DEFAULT_DRAIN_LIMIT",
    "Action",
    "Admission",
    "Allowed",
    "Authorizer",
    "BasicCredentials",
    "BearerCredentials",
    "CheckBudget",
    "Classifier",
    "Client",
    "CredentialStore",
    "Credentials",
    "Decision",
    "Denied",
    "HtpasswdStore",
    "Identity",
    "IssuedToken",
    "LoginThrottle",
    "Malformed",
    "Opened",
    "Outcome",
    "PasswordHasher",
    "ProxyTrust",
    "SafeMemcache",
    "Scope",
    "Sealer",
    "SignInFailure",
    "SignInRefused",
    "SingleMalt",
    "Target",
    "TokenRecord",
    "TooManyChecks",
    "Unavailable",
    "UserRecord",
    "VerificationCache",
    "Verdict",
    "Verifier",
    "canonical_name",
    "check_credentials",
    "classify_git",
    "classify_hg",
    "hash_password",
    "hash_token_secret",
    "judge",
    "new_token",
    "parse_authorization",
    "parse_token",
]
