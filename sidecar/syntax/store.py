"""``SIDECAR_STATE_URL``: where the shared prediction store lives, and how to show it without its password.

Unset, the store is the embedded SQLite file in ``SIDECAR_STATE_DIR``. A
``postgresql://`` (or ``postgres://``) URL in libpq's URI form names a
PostgreSQL database shared by every replica. The URL usually carries a
password, so nothing prints it whole: :func:`mask_url` replaces the password
with ``***`` for ``check-config``, logs and error messages.

Checked here, with the standard library only, is the form (scheme, host,
database name); whether the server answers is the store's business at start.

>>> parse_state_url("postgresql://sidecar:s3cret@db:5432/monitoring?sslmode=require")
'postgresql://sidecar:s3cret@db:5432/monitoring?sslmode=require'
>>> mask_url("postgresql://sidecar:s3cret@db:5432/monitoring?sslmode=require")
'postgresql://sidecar:***@db:5432/monitoring?sslmode=require'
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit, urlunsplit

__all__ = ["SCHEMES", "mask_url", "parse_state_url"]

SCHEMES = ("postgresql", "postgres")
_HELP = "expected postgresql://user:password@host:5432/database"


def parse_state_url(text: str) -> str:
    """Validate a store URL and return it trimmed; ``ValueError`` (without the password) if it is not one."""
    url = text.strip()
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number, or out of range
    except ValueError as exc:
        raise ValueError(f"{_HELP}; {exc}") from None
    if parts.scheme.lower() not in SCHEMES:
        raise ValueError(f"{_HELP}; the scheme must be postgresql://, not {parts.scheme or '(none)'}")
    query = dict(parse_qsl(parts.query))
    # libpq also takes the host from ?host=, which is how a Unix socket directory is named.
    if not (parts.hostname or query.get("host")):
        raise ValueError(f"{_HELP}; no host")
    if parts.path.strip("/") == "" and not query.get("dbname"):
        raise ValueError(f"{_HELP}; no database name")
    return url


def mask_url(url: str) -> str:
    """The URL with its password, in the user part or in ``?password=``, replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "***"  # not a URL one can take apart: show nothing of it
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}"
    query = "&".join(
        f"{key}=***" if key == "password" else pair
        for pair in parts.query.split("&")
        if pair
        for key in (pair.split("=", 1)[0],)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
