"""Text from outside (file names, upload names, payloads, error messages) made safe to store.

File systems hand back names that are not valid UTF-8 (Python keeps the bad bytes as
surrogate escapes), names may carry control characters (PostgreSQL refuses NUL in
text), and a name can be longer than the column that stores it. ``safe_text`` turns
any of these into printable, storable text deterministically: the same input always
gives the same output, so an idempotency key built from it stays stable, and a
shortened value ends in a digest of the full one, so two long names stay apart.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable

# C0 and C1 control characters, DEL, and lone surrogates that are not file-system escapes.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_DIGEST_CHARS = 12
_MAX_SUFFIX = 10


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def safe_text(value: str, limit: int | None = None) -> str:
    """``value`` as printable UTF-8 of at most ``limit`` characters.

    Undecodable file-system bytes become ``\\xNN``, control characters ``\\xNN``; a value
    over ``limit`` keeps its start and its suffix (``.png``) around ``~`` and 12 hex
    digits of the original's sha256."""
    original = value
    if any("\udc80" <= c <= "\udcff" for c in value):
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    value = _UNPRINTABLE.sub(_escape, value)
    if limit is None or len(value) <= limit:
        return value
    digest = hashlib.sha256(original.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_CHARS]
    stem, suffix = os.path.splitext(value)
    if len(suffix) > _MAX_SUFFIX:
        stem, suffix = value, ""
    keep = max(0, limit - len(suffix) - _DIGEST_CHARS - 1)
    return f"{stem[:keep]}~{digest}{suffix}"[:limit]


def fit_file_name(name: str, max_bytes: int) -> str:
    """``name`` shortened (start, ``~``, digest, suffix) so that it encodes to at most
    ``max_bytes`` on this file system; unchanged when it already fits."""
    raw = os.fsencode(name)
    if len(raw) <= max_bytes:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:_DIGEST_CHARS]
    stem, suffix = os.path.splitext(name)
    if len(os.fsencode(suffix)) > _MAX_SUFFIX:
        stem, suffix = name, ""
    budget = max_bytes - len(digest) - 1 - len(os.fsencode(suffix))
    kept, used = [], 0
    for char in stem:
        size = len(os.fsencode(char))
        if used + size > budget:
            break
        kept.append(char)
        used += size
    return f"{''.join(kept)}~{digest}{suffix}"


class Message(str):
    """English text that knows its message id and values, so a layer that knows its
    reader's language (the dashboard) can say it in that language; everywhere else
    (logs, the CLI, tests) it is the English text itself.

    ``Message("no inspection {id}", id=5)`` is ``"no inspection 5"``; its ``msgid`` is
    ``"no inspection {id}"``. A value that is a Message is translated with it."""

    msgid: str
    values: dict[str, object]

    def __new__(cls, msgid: str, **values: object) -> Message:
        obj = super().__new__(cls, msgid.format(**values))
        obj.msgid, obj.values = msgid, values
        return obj

    def translated(self, gettext: Callable[[str], str]) -> str:
        values = {k: v.translated(gettext) if isinstance(v, Message) else v for k, v in self.values.items()}
        return gettext(self.msgid).format(**values)
