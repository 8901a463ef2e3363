"""Connection URLs without their secrets: what may appear in logs, metadata and errors.

A URL's password (and any `password=` query parameter) is replaced by `***` wherever text about
a connection leaves the resource; `scrub` also removes the password from driver messages, which
sometimes echo the connection string.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit

_PASSWORD_IN_URL = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^@\s]*)(?=@)")
_PASSWORD_PARAM = re.compile(r"(?P<head>password=)(?P<secret>[^&\s]+)", re.IGNORECASE)


def redact(url: str) -> str:
    """`url` with its password (in the user part or a `password=` parameter) as `***`."""
    url = _PASSWORD_IN_URL.sub(lambda m: m["head"] + "***", url)
    return _PASSWORD_PARAM.sub(lambda m: m["head"] + "***", url)


def secrets_of(url: str) -> list[str]:
    """The secret strings of `url`, raw and URL-decoded, to scrub from any text."""
    parts = urlsplit(url)
    found = [parts.password] if parts.password else []
    found += [value for key, value in parse_qsl(parts.query) if key.lower() == "password"]
    return [s for secret in found for s in {secret, unquote(secret)} if s]


def scrub(text: str, url: str) -> str:
    """`text` (an error message) with the URL redacted and no trace of its password."""
    text = text.replace(url, redact(url))
    for secret in secrets_of(url):
        text = text.replace(secret, "***")
    return redact(text)


def scheme_of(url: str) -> str:
    """The database kind: `postgresql`, `sqlite`, or the SQLAlchemy dialect name."""
    scheme = urlsplit(url).scheme.lower()
    base = scheme.split("+", 1)[0]
    return {"postgres": "postgresql", "redshift": "postgresql"}.get(base, base)
