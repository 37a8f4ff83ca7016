"""URLs in configs carry no credentials: where they belong instead, and how to show a URL safely.

Shared by every client that takes a URL from a config (served models, retriever servers).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Query parameters holding a credential: any of these words in the name (api_key, access_token,
# X-Amz-Signature, apiKey, ...).
_SECRET_WORDS = frozenset(
    {"key", "apikey", "token", "secret", "password", "passwd", "pwd", "auth", "authorization"}
    | {"signature", "sig", "credential", "credentials", "session", "sessionid"}
)


def _secret_parameter(name: str) -> bool:
    return bool(_SECRET_WORDS & set(re.split(r"[^a-z0-9]+", name.lower())))


def redact_url(url: str) -> str:
    """The URL with its userinfo and credential-like query values replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = urlencode(
        [
            (name, "***" if _secret_parameter(name) else value)
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def refuse_credentials(url: str, instead: str) -> str:
    """The URL if it carries no credentials; else a ValueError naming where they belong (``instead``).

    Refused rather than redacted: a URL is part of a config, which is hashed into artifact ids,
    logged, stored and shown in the Prefect UI, and a redacted copy would not work anyway.
    """
    parts = urlsplit(url)
    secrets = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True) if _secret_parameter(name)]
    if "@" in parts.netloc or secrets:
        found = " and ".join(
            (["a user:password@ part"] if "@" in parts.netloc else [])
            + ([f"query parameter {', '.join(secrets)}"] if secrets else [])
        )
        raise ValueError(
            f"{redact_url(url)} carries credentials ({found}), which would be logged and stored with "
            f"the config; {instead}"
        )
    return url
