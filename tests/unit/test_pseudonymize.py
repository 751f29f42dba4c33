"""Keyed pseudonyms: stable for a key, different across keys and purposes, never a default key."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest
from pydantic import SecretStr

from driftline.streams.pseudonymize import MIN_KEY_BYTES, PseudonymizationKeyError, Pseudonymizer, generate_key

KEY = b"pseudonymize-tests-key-0123456789"


def reference(value: str, purpose: str = "subject", key: bytes = KEY, length: int = 32) -> str:
    return "pz_" + hmac.new(key, f"{purpose}\x1f{value}".encode(), hashlib.sha256).hexdigest()[:length]


def test_pseudonym_is_a_truncated_hmac_sha256_of_purpose_and_value():
    assert Pseudonymizer(KEY).pseudonymize("customer-42") == reference("customer-42")
    assert re.fullmatch(r"pz_[0-9a-f]{32}", Pseudonymizer(KEY).pseudonymize("customer-42"))


def test_same_key_gives_the_same_pseudonym_in_every_instance():
    assert Pseudonymizer(KEY).pseudonymize("x") == Pseudonymizer(KEY.decode()).pseudonymize("x")


def test_other_key_or_purpose_gives_another_pseudonym():
    p = Pseudonymizer(KEY)
    assert p.pseudonymize("x") != Pseudonymizer(b"another-key-another-key-another!").pseudonymize("x")
    assert p.pseudonymize("x", "subject") != p.pseudonymize("x", "rater")
    assert p.pseudonymize("x") != p.pseudonymize("y")


def test_prefix_and_length_are_configurable():
    assert Pseudonymizer(KEY, prefix="sub_", length=12).pseudonymize("x") == "sub_" + reference("x")[3:15]
    with pytest.raises(ValueError, match="length"):
        Pseudonymizer(KEY, length=4)


def test_cache_never_changes_the_result():
    cached = Pseudonymizer(KEY, cache_size=2)
    uncached = Pseudonymizer(KEY, cache_size=0)
    values = [f"id-{i % 5}" for i in range(20)]
    assert [cached.pseudonymize(v) for v in values] == [uncached.pseudonymize(v) for v in values]
    assert [cached.pseudonymize(v, "rater") for v in values] == [reference(v, "rater") for v in values]


@pytest.mark.parametrize("key", [b"", b"short", "x" * (MIN_KEY_BYTES - 1)])
def test_short_keys_are_refused(key):
    with pytest.raises(PseudonymizationKeyError, match=f"at least {MIN_KEY_BYTES} bytes"):
        Pseudonymizer(key)


@pytest.mark.parametrize("secret", [None, "", b""])
def test_a_missing_key_is_refused_with_the_setting_to_set(secret):
    with pytest.raises(PseudonymizationKeyError, match="DRIFTLINE_PSEUDONYMIZATION_KEY"):
        Pseudonymizer.from_secret(secret)


def test_key_from_a_settings_secret():
    secret = SecretStr(KEY.decode())
    assert Pseudonymizer.from_secret(secret).pseudonymize("x") == reference("x")


def test_generated_keys_are_random_hex_and_usable():
    a, b = generate_key(), generate_key()
    assert a != b and re.fullmatch(r"[0-9a-f]{64}", a)
    assert Pseudonymizer(a).pseudonymize("x").startswith("pz_")


def test_repr_does_not_show_the_key():
    assert KEY.decode() not in repr(Pseudonymizer(KEY)) and "pz_" in repr(Pseudonymizer(KEY))


def test_unusual_text_is_pseudonymized_without_error():
    p = Pseudonymizer(KEY)
    for value in ("", "\x00", "\udcff", "😀" * 100, "a" * 100_000):
        assert len(p.pseudonymize(value)) == 35
