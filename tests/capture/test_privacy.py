from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from sidecar.capture.privacy import HASH_PREFIX, MIN_SALT_LENGTH, Anonymizer, check_pii, parse_fields

SALT = "0123456789abcdef-test-salt"
OTHER_SALT = "fedcba9876543210-test-salt"


def test_parse_fields_trims_and_deduplicates() -> None:
    assert parse_fields(" email ,phone,email") == ("email", "phone")
    assert parse_fields("user_id") == ("user_id",)


@pytest.mark.parametrize("text", ["", "email,,phone", "email,", " , "])
def test_parse_fields_rejects_empty_names(text: str) -> None:
    with pytest.raises(ValueError, match="empty name"):
        parse_fields(text)


def test_check_pii_requires_a_long_enough_salt_for_hash_mode() -> None:
    [problem] = check_pii(("email",), "hash", None)
    assert "SIDECAR_PII_SALT is required" in problem and "SIDECAR_PII_MODE=drop" in problem
    [problem] = check_pii(("email",), "hash", "s3cr3t-v4lue")
    assert f"at least {MIN_SALT_LENGTH}" in problem and "s3cr3t-v4lue" not in problem
    assert check_pii(("email",), "hash", SALT) == []
    assert check_pii(("email",), "drop", None) == []
    assert check_pii((), "hash", None) == []


def test_anonymizer_refuses_hash_mode_without_salt() -> None:
    with pytest.raises(ValueError, match="SIDECAR_PII_SALT"):
        Anonymizer(("email",), "hash")


def test_hash_is_hmac_sha256_of_the_canonical_form() -> None:
    anonymizer = Anonymizer(("email", "user"), "hash", SALT)
    out = anonymizer.apply({"email": "ann@example.com", "user": {"b": 1, "a": [1.5, None]}, "age": 31})

    def expected(message: bytes) -> str:
        return HASH_PREFIX + hmac.new(SALT.encode(), message, hashlib.sha256).hexdigest()

    assert out == {"email": expected(b"ann@example.com"), "user": expected(b'{"a":[1.5,null],"b":1}'), "age": 31}


def test_hash_is_stable_for_a_salt_and_differs_across_salts() -> None:
    first = Anonymizer(("email",), "hash", SALT)
    again = Anonymizer(("email",), "hash", SALT)  # another replica, or after a restart
    other = Anonymizer(("email",), "hash", OTHER_SALT)
    value = {"email": "ann@example.com"}
    assert first.apply(value) == again.apply(value)
    assert first.apply(value)["email"] != other.apply(value)["email"]
    assert first.apply(value)["email"] != first.apply({"email": "bob@example.com"})["email"]


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("42", 42, True),  # an id sent as a string by one client and a number by another
        (1, 1.0, False),
        (True, "true", True),
        ({"x": 1, "y": 2}, {"y": 2, "x": 1}, True),
        ("ann", "Ann", False),
        ("\ud800", "\ud800", True),  # a lone surrogate still hashes
    ],
)
def test_canonical_forms(a: Any, b: Any, equal: bool) -> None:
    anonymizer = Anonymizer(("f",), "hash", SALT)
    assert (anonymizer.pseudonym(a) == anonymizer.pseudonym(b)) is equal


def test_missing_values_stay_missing() -> None:
    anonymizer = Anonymizer(("email",), "hash", SALT)
    assert anonymizer.apply({"email": None, "age": 3}) == {"email": None, "age": 3}


def test_drop_mode_removes_the_fields_without_touching_the_input() -> None:
    anonymizer = Anonymizer(("email", "phone"), "drop")
    features = {"email": "ann@example.com", "age": 31}
    assert anonymizer.apply(features) == {"age": 31}
    assert features == {"email": "ann@example.com", "age": 31}


def test_rows_without_listed_fields_pass_through_uncopied() -> None:
    features = {"age": 31}
    assert Anonymizer(("email",), "hash", SALT).apply(features) is features
    assert Anonymizer((), "drop").apply(features) is features


def test_the_salt_never_shows() -> None:
    anonymizer = Anonymizer(("email",), "hash", SALT)
    assert SALT not in repr(anonymizer)
    assert repr(anonymizer) == "Anonymizer(fields=('email',), mode='hash')"
    assert not any(SALT in repr(getattr(anonymizer, slot)) for slot in Anonymizer.__slots__)
    with pytest.raises(ValueError) as info:
        Anonymizer(("email",), "hash", "short-salt")
    assert "short-salt" not in str(info.value)


def test_pseudonym_needs_hash_mode() -> None:
    with pytest.raises(RuntimeError):
        Anonymizer(("email",), "drop").pseudonym("x")
