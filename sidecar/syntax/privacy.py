"""``SIDECAR_PII_FIELDS``, ``SIDECAR_PII_MODE`` and ``SIDECAR_PII_SALT``: what the settings check.

The anonymiser itself is :class:`sidecar.capture.privacy.Anonymizer`, which
runs the same :func:`check_pii`, so the settings and the anonymiser cannot
disagree on what is acceptable.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["PiiMode", "PII_MODES", "MIN_SALT_LENGTH", "parse_fields", "check_pii"]

PiiMode = Literal["hash", "drop"]
PII_MODES: tuple[PiiMode, ...] = get_args(PiiMode)
# A short key can be guessed, and then low-entropy values (emails, phone
# numbers) can be recomputed from their hashes by brute force.
MIN_SALT_LENGTH = 16


def parse_fields(text: str) -> tuple[str, ...]:
    """Parse ``SIDECAR_PII_FIELDS``: comma-separated feature names, duplicates removed, order kept.

    Raises ``ValueError`` with a message that reads after "is not valid: ".

    >>> parse_fields("email, phone,email")
    ('email', 'phone')
    """
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise ValueError("expected comma-separated feature names, e.g. email,phone; found an empty name")
    return tuple(dict.fromkeys(names))


def check_pii(fields: tuple[str, ...], mode: PiiMode, salt: str | None) -> list[str]:
    """The cross-variable problems of the privacy settings, one message per problem.

    The settings module adds these to its own list; none of them shows the salt.
    """
    if not fields or mode != "hash":
        return []
    if not salt:
        return [
            "SIDECAR_PII_SALT is required when SIDECAR_PII_MODE=hash and SIDECAR_PII_FIELDS is set "
            "(or set SIDECAR_PII_MODE=drop)"
        ]
    if len(salt) < MIN_SALT_LENGTH:
        return [f"SIDECAR_PII_SALT is too short: expected at least {MIN_SALT_LENGTH} characters of a random secret"]
    return []
