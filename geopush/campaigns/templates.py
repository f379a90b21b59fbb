"""Rendering an offer's localized template into a notification title and body (SPEC 4).

Substitution is a single regex pass over the two known placeholders, not `str.format`: a
marketer's text may hold other braces ("{50% off}"), and a customer's first name must never be
able to inject a placeholder or a format spec.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from geopush.campaigns.offer_body import normalize_locale

PLACEHOLDERS: tuple[str, ...] = ("first_name", "store_name")

_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")


def choose_translation(message: Mapping[str, Any], locale: str | None) -> dict[str, str]:
    """The translation for a device locale: exact tag, then shorter prefixes of it, then
    the default locale.

    This is RFC 4647 "lookup": `fr-CA` tries `fr-CA` then `fr` (SPEC's exact-then-language),
    and a longer tag such as `zh-Hant-TW` also tries `zh-Hant`. Comparison ignores case and
    treats `_` like `-`, since Android reports `fr_CA`. A sibling region (`fr-FR` for a
    `fr-CA` device) is not a match: SPEC says the default comes next.
    """
    translations: Mapping[str, dict[str, str]] = message.get("translations") or {}
    by_key = {normalize_locale(k): v for k, v in translations.items()}
    if locale:
        parts = normalize_locale(locale).split("-")
        for length in range(len(parts), 0, -1):
            found = by_key.get("-".join(parts[:length]))
            if found is not None:
                return found
    default = by_key.get(normalize_locale(str(message.get("default_locale") or "")))
    if default is not None:
        return default
    if not by_key:
        raise ValueError("the message has no translations")
    # A validated message always has its default; for one that somehow lacks it, pick a
    # deterministic translation rather than fail a delivery.
    return by_key[min(by_key)]


def fill(text: str, values: Mapping[str, str | None]) -> str:
    """Replace `{first_name}` and `{store_name}`; leave every other brace as written.

    A missing, None or blank value renders as nothing, and takes one adjacent space with it
    so that no double, leading or trailing space is left: "Hi {first_name}, ..." → "Hi, ...",
    "Bonjour {first_name} !" → "Bonjour !", "{first_name} welcome" → "welcome". Values are
    stripped and never re-scanned, so a name containing "{store_name}" is printed as is.
    """
    out = ""
    pos = 0
    for match in _PLACEHOLDER.finditer(text):
        out += text[pos : match.start()]
        pos = match.end()
        value = (values.get(match.group(1)) or "").strip()
        if value:
            out += value
            continue
        after = text[pos] if pos < len(text) else ""
        if out.endswith(" ") and (after == " " or not after.isalnum()):
            if after == " ":
                pos += 1  # "a {x} b" → "a b"
            else:
                out = out[:-1]  # "Hi {x}, ..." → "Hi, ..."; "Hello {x}" → "Hello"
        elif (not out or out[-1].isspace()) and after == " ":
            pos += 1  # "{x} welcome" → "welcome"
    return out + text[pos:]


def render(
    message: Mapping[str, Any], locale: str | None, values: Mapping[str, str | None]
) -> tuple[str, str]:
    """(title, body) of a template for a device locale, placeholders filled."""
    translation = choose_translation(message, locale)
    return fill(translation["title"], values), fill(translation["body"], values)
