"""The dashboard in Chinese and English: which language a request gets, and its messages.

Every text of the pages and of their scripts is an English message id, translated by a
gettext catalogue (``locale/<language>/LC_MESSAGES/messages.po``) read with Babel when the
server first needs it. Templates call ``_("...")``; the scripts call ``t("...")`` with
the catalogue the page carries as JSON (``{name}`` placeholders filled in the script).
A user's own choice wins (kept with the account); without one, the browser's
``Accept-Language``; without that, English. tests/test_i18n.py checks that every message
of the templates and scripts has its Chinese translation.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

from babel.core import Locale, UnknownLocaleError
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LOCALE_DIR = Path(__file__).with_name("locale")
DEFAULT = "en"
# Each language offered, by its BCP 47 tag (what <html lang> and the browser use), with its name in itself.
LANGUAGES = {"en": "English", "zh-CN": "中文"}
_CATALOGUE = {"zh-CN": "zh_CN"}  # the catalogue folder of each translated language
_OFFERED = {tag: Locale.parse(tag, sep="-") for tag in LANGUAGES}


@functools.cache
def _catalogue(language: str) -> Catalog | None:
    """The language's catalogue, read once (None: English, the message ids themselves)."""
    folder = _CATALOGUE.get(language)
    if folder is None:
        return None
    with (LOCALE_DIR / folder / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f, locale=folder)


@functools.cache
def translations(language: str) -> NullTranslations:
    """The gettext translations of a language (English: the message ids themselves)."""
    catalog = _catalogue(language)
    if catalog is None:
        return NullTranslations()
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled)


@functools.cache
def script_messages(language: str) -> dict[str, str]:
    """msgid -> translation, for the page's scripts (empty for English)."""
    catalog = _catalogue(language)
    if catalog is None:
        return {}
    return {str(m.id): str(m.string) for m in catalog if m.id and m.string and isinstance(m.id, str)}


def choose(saved: str | None, accept_language: str | None) -> str:
    """The user's saved language, else the first of the browser's we have, else English."""
    if saved in LANGUAGES:
        return saved
    for item in (accept_language or "").split(","):
        tag = item.split(";")[0].strip()
        if not tag or tag == "*":
            continue
        try:
            wanted = Locale.parse(tag, sep="-")
        except (ValueError, UnknownLocaleError):
            continue
        for language, offered in _OFFERED.items():
            # zh, zh-CN, zh-Hans and zh-SG read simplified Chinese; zh-TW and zh-HK do not (not offered yet).
            if wanted.language == offered.language and (
                wanted.language != "zh" or wanted.territory in (None, "CN", "SG") or wanted.script == "Hans"
            ):
                return language
    return DEFAULT


def reader_gettext(request: Any, saved: str | None = None) -> Any:
    """The gettext of whoever asks: the language they chose (``saved``, else the one set on
    the request once they were identified), else their browser's."""
    chosen = saved or getattr(request.state, "language", None)
    return translations(choose(chosen, request.headers.get("accept-language"))).gettext


def N_(msgid: str) -> str:
    """Marks a message id for the catalogue without translating it here."""
    return msgid


# pydantic's own validation messages by error type, in pydantic's wording; a message's
# {placeholders} are the error's context. English readers get pydantic's text unchanged.
PYDANTIC_MESSAGES = {
    "missing": N_("Field required"),
    "extra_forbidden": N_("Extra inputs are not permitted"),
    "json_invalid": N_("JSON decode error"),
    "string_type": N_("Input should be a valid string"),
    "string_too_short": N_("String should have at least {min_length} characters"),
    "string_too_long": N_("String should have at most {max_length} characters"),
    "string_pattern_mismatch": N_("String should match pattern '{pattern}'"),
    "int_type": N_("Input should be a valid integer"),
    "int_parsing": N_("Input should be a valid integer, unable to parse string as an integer"),
    "int_from_float": N_("Input should be a valid integer, got a number with a fractional part"),
    "float_type": N_("Input should be a valid number"),
    "float_parsing": N_("Input should be a valid number, unable to parse string as a number"),
    "finite_number": N_("Input should be a finite number"),
    "bool_type": N_("Input should be a valid boolean"),
    "bool_parsing": N_("Input should be a valid boolean, unable to interpret input"),
    "greater_than": N_("Input should be greater than {gt}"),
    "greater_than_equal": N_("Input should be greater than or equal to {ge}"),
    "less_than": N_("Input should be less than {lt}"),
    "less_than_equal": N_("Input should be less than or equal to {le}"),
    "literal_error": N_("Input should be {expected}"),
    "enum": N_("Input should be {expected}"),
    "list_type": N_("Input should be a valid list"),
    "dict_type": N_("Input should be a valid dictionary"),
    "model_attributes_type": N_("Input should be a valid dictionary or object to extract fields from"),
    "too_short": N_("{field_type} should have at least {min_length} items after validation, not {actual_length}"),
    "too_long": N_("{field_type} should have at most {max_length} items after validation, not {actual_length}"),
    "datetime_parsing": N_("Input should be a valid datetime, {error}"),
    "datetime_from_date_parsing": N_("Input should be a valid datetime or date, {error}"),
}


def validation_message(error: dict[str, Any], gettext: Any) -> str:
    """One of pydantic's validation errors said with ``gettext``: our validators' Message
    translated, pydantic's own messages by their type; anything else as pydantic says it."""
    context = error.get("ctx") or {}
    cause = context.get("error")
    if isinstance(cause, ValueError) and cause.args and hasattr(cause.args[0], "translated"):
        return str(cause.args[0].translated(gettext))
    template = PYDANTIC_MESSAGES.get(error.get("type", ""))
    if template is None or (translated := gettext(template)) == template:
        return str(error.get("msg", ""))
    try:
        return str(translated.format(**context))
    except (KeyError, IndexError, ValueError):  # a context this table did not expect
        return str(error.get("msg", ""))
