"""PasswordHasher: argon2 for new hashes, the htpasswd schemes for old ones, nothing else."""

from __future__ import annotations

import passlib.hash as schemes
import pytest

from singlemalt.passwords import PasswordHasher, hash_password


@pytest.mark.parametrize(
    "stored",
    [
        pytest.param(schemes.apr_md5_crypt.hash("pw"), id="apr_md5_crypt"),
        pytest.param(schemes.sha256_crypt.using(rounds=1000).hash("pw"), id="sha256_crypt"),
        pytest.param(schemes.sha512_crypt.using(rounds=1000).hash("pw"), id="sha512_crypt"),
        pytest.param(schemes.bcrypt.using(rounds=4).hash("pw"), id="bcrypt-2b"),
        pytest.param(schemes.bcrypt.using(rounds=4, ident="2y").hash("pw"), id="bcrypt-2y"),
        pytest.param(schemes.argon2.using(rounds=1, memory_cost=8, parallelism=1).hash("pw"),
                     id="argon2"),
    ],
)
def test_accepted_schemes(hasher: PasswordHasher, stored: str) -> None:
    assert hasher.usable(stored)
    assert hasher.verify("pw", stored)
    assert not hasher.verify("pW", stored)


@pytest.mark.parametrize(
    "stored",
    [
        pytest.param("pw", id="plaintext"),
        pytest.param(schemes.des_crypt.hash("pw"), id="des_crypt"),
        pytest.param(schemes.ldap_sha1.hash("pw"), id="ldap_sha1"),
        pytest.param(schemes.md5_crypt.hash("pw"), id="md5_crypt"),
        pytest.param("", id="empty"),
    ],
)
def test_refused_schemes(hasher: PasswordHasher, stored: str) -> None:
    assert not hasher.usable(stored)
    assert not hasher.verify("pw", stored)


def test_new_hashes_are_argon2id(hasher: PasswordHasher) -> None:
    stored = hasher.hash("pw")
    assert stored.startswith("$argon2id$")
    assert hasher.verify("pw", stored)


def test_production_parameters() -> None:
    assert hash_password("pw").startswith("$argon2id$v=19$m=65536,t=3,p=4$")


def test_hash_password_with_a_hasher(hasher: PasswordHasher) -> None:
    assert hash_password("pw", hasher=hasher).startswith("$argon2id$v=19$m=8,t=1,p=1$")


def test_bcrypt_uses_the_first_72_bytes_like_htpasswd(hasher: PasswordHasher) -> None:
    long = "\u00e9" * 50  # 100 bytes of UTF-8
    stored = schemes.bcrypt.using(rounds=4).hash(long.encode()[:72])
    assert hasher.verify(long, stored)
    assert hasher.verify(long[:36] + "anything after byte 72", stored)
    assert not hasher.verify(long[:35], stored)


def test_what_a_scheme_cannot_take_is_a_failure(hasher: PasswordHasher) -> None:
    assert not hasher.verify("nul\0byte", schemes.bcrypt.using(rounds=4).hash("x"))
    assert not hasher.verify("pw", "$argon2id$garbage")
    assert not hasher.verify("pw", "$2b$04$tooshort")


def test_dummy_hash_is_usable_and_matches_nothing_guessable(hasher: PasswordHasher) -> None:
    assert hasher.usable(hasher.dummy_hash)
    assert not hasher.verify("", hasher.dummy_hash)
