"""Keyed pseudonyms for personal identifiers (subject ids, rater ids, chosen features).

A pseudonym is ``<prefix><hex>``: the first ``length`` hex digits of
HMAC-SHA256(key, purpose + 0x1f + value). The same key gives the same pseudonym
in every run and on every worker, so joins, per-subject queries and erasure
requests keep working; without the key nobody can recompute it, so a
dictionary of candidate ids (all phone numbers, all customer numbers) does not
reverse it, as it would a plain hash.

This is **pseudonymization, not anonymization** (GDPR Art. 4(5), Recital 26):
whoever holds the key can link a pseudonym back to a person by hashing
candidate ids, so pseudonymized data is still personal data. Keep the key
secret, out of the indices and the repository; rotating it changes every
pseudonym (old and new data no longer join).

``purpose`` separates the domains: the same raw value gives different
pseudonyms as a subject id and as a rater id, so one cannot be linked to the
other by equality.

There is deliberately no default key: a default (or one derived from
something public, like the topic name) would let anyone recompute the
pseudonyms. :meth:`Pseudonymizer.from_secret` refuses a missing or short key
with :class:`PseudonymizationKeyError` at start, and
:func:`generate_key` makes a good one.

Example:
    >>> p = Pseudonymizer(b"0123456789abcdef0123456789abcdef")
    >>> p.pseudonymize("alice@example.com")
    'pz_81a17ea1ac014346f371322aa6f7de24'
    >>> p.pseudonymize("alice@example.com") == p.pseudonymize("alice@example.com", "subject")
    True
    >>> p.pseudonymize("alice@example.com", "rater") == p.pseudonymize("alice@example.com")
    False
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

__all__ = ["MIN_KEY_BYTES", "PseudonymizationKeyError", "Pseudonymizer", "generate_key"]

#: Shortest key accepted, in bytes (HMAC-SHA256 wants 32 random bytes; 16 is the floor).
MIN_KEY_BYTES = 16
_SEPARATOR = "\x1f"  # ASCII unit separator: cannot be confused with a purpose name


class PseudonymizationKeyError(ValueError):
    """No usable pseudonymization key was configured; raised at start, never per event."""


def generate_key() -> str:
    """A new random key: 32 bytes as 64 hex characters, for the key setting.

    Example:
        >>> len(generate_key())
        64
    """
    return secrets.token_hex(32)


class Pseudonymizer:
    """Replace personal identifiers by keyed, stable, truncated HMAC-SHA256 pseudonyms.

    Parameters
    ----------
    key
        The secret key, at least :data:`MIN_KEY_BYTES` bytes (a ``str`` is
        taken as its UTF-8 bytes).
    prefix
        Marks a value as a pseudonym, so nobody takes it for a raw id.
    length
        Hex digits kept from the 64 of the digest (32 = 128 bits: collisions
        are negligible even for billions of subjects).
    cache_size
        Pseudonyms remembered per purpose (subjects repeat; a hit costs a dict
        lookup instead of an HMAC). The cache holds raw ids in process memory
        only; 0 disables it.

    Example:
        >>> p = Pseudonymizer("a key of at least sixteen bytes", prefix="sub_", length=12)
        >>> p.pseudonymize("42")
        'sub_63fe128b30b5'
    """

    def __init__(self, key: bytes | str, *, prefix: str = "pz_", length: int = 32, cache_size: int = 65_536) -> None:
        if isinstance(key, str):
            key = key.encode("utf-8")
        if not isinstance(key, (bytes, bytearray)) or len(key) < MIN_KEY_BYTES:
            raise PseudonymizationKeyError(
                f"the pseudonymization key must be at least {MIN_KEY_BYTES} bytes; "
                f"generate one with driftline.streams.pseudonymize.generate_key()"
            )
        if not 8 <= length <= 64:
            raise ValueError(f"length must be between 8 and 64 hex digits, not {length}")
        self.prefix = prefix
        self.length = length
        self.cache_size = cache_size
        self._base = hmac.new(bytes(key), digestmod=hashlib.sha256)
        self._caches: dict[str, dict[str, str]] = {}

    @classmethod
    def from_secret(cls, secret: Any, **options: Any) -> "Pseudonymizer":
        """Build from a settings value (``str``, ``bytes``, pydantic ``SecretStr`` or None).

        Raises :class:`PseudonymizationKeyError` when the key is missing or short.

        Example:
            >>> Pseudonymizer.from_secret(None)
            Traceback (most recent call last):
            ...
            driftline.streams.pseudonymize.PseudonymizationKeyError: no pseudonymization key configured (DRIFTLINE_PSEUDONYMIZATION_KEY); generate one with driftline.streams.pseudonymize.generate_key()
        """
        if secret is not None and hasattr(secret, "get_secret_value"):
            secret = secret.get_secret_value()
        if secret is None or secret == "" or secret == b"":
            raise PseudonymizationKeyError(
                "no pseudonymization key configured (DRIFTLINE_PSEUDONYMIZATION_KEY); "
                "generate one with driftline.streams.pseudonymize.generate_key()"
            )
        return cls(secret, **options)

    def pseudonymize(self, value: str, purpose: str = "subject") -> str:
        """The pseudonym of ``value`` in the domain ``purpose`` (subject, rater, a feature name...).

        Example:
            >>> p = Pseudonymizer(b"0123456789abcdef")
            >>> p.pseudonymize("bob").startswith("pz_"), len(p.pseudonymize("bob"))
            (True, 35)
        """
        cache = self._caches.get(purpose)
        if cache is None:
            cache = self._caches[purpose] = {}
        else:
            hit = cache.get(value)
            if hit is not None:
                return hit
        mac = self._base.copy()
        mac.update((purpose + _SEPARATOR + value).encode("utf-8", "surrogatepass"))
        pseudonym = self.prefix + mac.hexdigest()[: self.length]
        if self.cache_size:
            if len(cache) >= self.cache_size:
                cache.clear()  # cheaper than LRU bookkeeping; refills with the hot ids
            cache[value] = pseudonym
        return pseudonym

    def __repr__(self) -> str:  # never shows the key
        return f"Pseudonymizer(prefix={self.prefix!r}, length={self.length})"
