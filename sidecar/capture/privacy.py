"""Pseudonymise or remove personal data in features before anything else sees them.

The capture worker calls :meth:`Anonymizer.apply` on each row's features as
the very first step, so no sink, store or statistic ever holds a raw value of
a listed field.

Hash mode replaces a value with ``"hmac-sha256:" + 64 hex digits``, the
HMAC-SHA256 under ``SIDECAR_PII_SALT`` of the value's canonical form:

- a string: its UTF-8 bytes (lone surrogates passed through);
- anything else: its compact JSON with sorted keys (``42`` → ``42``,
  ``1.0`` → ``1.0``, ``true`` → ``true``, ``{"b": 1, "a": 2}`` → ``{"a":2,"b":1}``).

So equal values hash equally on every replica and across restarts (joins on a
hashed id still work), while nobody without the salt can reverse or recompute
them. A consequence, on purpose: the string ``"42"`` and the number ``42``
hash alike, because an id often arrives as a number from one client and as a
string from another; ``1`` and ``1.0`` do not. ``None`` (a missing value)
stays ``None``, so null-share quality checks still see it; it reveals nothing.

Drop mode removes the key. Field names match top-level feature names exactly.

The modes, :func:`parse_fields` and :func:`check_pii` live in
:mod:`sidecar.syntax.privacy`, so the settings check them without loading
this module's JSON library; they are re-exported here.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

import orjson

from sidecar.syntax.privacy import MIN_SALT_LENGTH, PII_MODES, PiiMode, check_pii, parse_fields

__all__ = ["Anonymizer", "PiiMode", "PII_MODES", "HASH_PREFIX", "MIN_SALT_LENGTH", "parse_fields", "check_pii"]

HASH_PREFIX = "hmac-sha256:"


class Anonymizer:
    """Hash or drop the listed features of each row.

    Usage::

        anonymizer = Anonymizer(("email",), "hash", salt="a-long-random-secret")
        anonymizer.apply({"email": "ann@example.com", "age": 31})
        # {"email": "hmac-sha256:5c1f...", "age": 31}

    The salt is kept only inside a prepared HMAC state, never as an attribute,
    and the repr shows the fields and the mode alone.
    """

    __slots__ = ("fields", "mode", "_mac")

    def __init__(self, fields: Iterable[str], mode: PiiMode, salt: str | None = None) -> None:
        self.fields = tuple(fields)
        self.mode = mode
        problems = check_pii(self.fields, mode, salt)
        if problems:
            raise ValueError("; ".join(problems))
        self._mac: hmac.HMAC | None = None
        if mode == "hash" and salt:
            # Keying once and copying per value skips the key schedule on every call.
            self._mac = hmac.new(salt.encode(), digestmod=hashlib.sha256)

    def __repr__(self) -> str:
        return f"Anonymizer(fields={self.fields!r}, mode={self.mode!r})"

    def apply(self, features: dict[str, Any]) -> dict[str, Any]:
        """The features with the listed fields hashed or removed.

        Never mutates its argument; returns it unchanged when no listed field is present.
        """
        present = [name for name in self.fields if name in features]
        if not present:
            return features
        out = dict(features)
        for name in present:
            if self.mode == "drop":
                del out[name]
            elif out[name] is not None:
                out[name] = self.pseudonym(out[name])
        return out

    def pseudonym(self, value: Any) -> str:
        """The stable hash of one value; only available in hash mode."""
        if self._mac is None:
            raise RuntimeError("pseudonym() needs hash mode and a salt")
        mac = self._mac.copy()
        if isinstance(value, str):
            # surrogatepass: a lone surrogate that a lenient JSON parser let through must not raise here.
            mac.update(value.encode("utf-8", "surrogatepass"))
        else:
            mac.update(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))
        return HASH_PREFIX + mac.hexdigest()
