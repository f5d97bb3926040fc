"""What can go wrong building a profile, split by who has to act.

::

    SidecarError
    ├── DataError         DATA is missing, unreadable or malformed      → exit 1
    └── ProblemsError
        └── OptionError   the options do not fit each other or DATA     → exit 2
"""

from __future__ import annotations

from sidecar.exceptions import ProblemsError, SidecarError

__all__ = ["DataError", "OptionError"]


class DataError(SidecarError):
    """The data file cannot be read as the format it claims to be; the message names the place."""


class OptionError(ProblemsError):
    """Options that cannot be used, such as a column that DATA does not have. ``problems`` has one line each."""
