"""Localized notification templates (SPEC section 4): locale choice, placeholders, validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geopush.campaigns.offers import OfferError, validate_message
from geopush.campaigns.templates import choose_translation, fill, render

MESSAGE = {
    "default_locale": "en",
    "translations": {
        "en": {"title": "Hello {first_name}", "body": "Welcome to {store_name}"},
        "fr": {"title": "Bonjour {first_name}", "body": "Bienvenue chez {store_name}"},
        "fr-CA": {"title": "Allô {first_name}", "body": "Bienvenue chez {store_name}"},
        "zh-Hant": {"title": "你好", "body": "歡迎"},
    },
}
VALUES = {"first_name": "Marie", "store_name": "Rue Saint-Denis"}


@pytest.mark.parametrize(
    ("locale", "title"),
    [
        ("fr-CA", "Allô Marie"),
        ("FR-ca", "Allô Marie"),
        ("fr_CA", "Allô Marie"),
        ("fr-FR", "Bonjour Marie"),  # language next
        ("fr", "Bonjour Marie"),
        ("fr-Latn-CA", "Bonjour Marie"),  # not exact, and not fr-CA: the language
        ("zh-Hant-TW", "你好"),  # the longest prefix that has a translation
        ("zh-Hans", "Hello Marie"),
        ("de-DE", "Hello Marie"),  # the default
        ("", "Hello Marie"),
        (None, "Hello Marie"),
        ("en-GB", "Hello Marie"),
    ],
)
def test_locale_choice(locale: str | None, title: str) -> None:
    assert render(MESSAGE, locale, VALUES)[0] == title


def test_default_locale_matches_keys_loosely() -> None:
    message = {"default_locale": "fr_ca", "translations": {"fr-CA": {"title": "T", "body": "B"}}}
    assert render(message, "de", {}) == ("T", "B")


def test_a_message_without_its_default_still_renders_deterministically() -> None:
    message = {
        "default_locale": "en",
        "translations": {"it": {"title": "I", "body": "b"}, "de": {"title": "D", "body": "b"}},
    }
    assert render(message, "es", {})[0] == "D"
    with pytest.raises(ValueError, match="no translations"):
        render({"default_locale": "en", "translations": {}}, "en", {})


def test_choose_translation_returns_the_translation() -> None:
    assert choose_translation(MESSAGE, "fr-BE") == MESSAGE["translations"]["fr"]


def test_placeholders_are_filled() -> None:
    assert render(MESSAGE, "en", VALUES) == ("Hello Marie", "Welcome to Rue Saint-Denis")


@pytest.mark.parametrize(
    ("template", "values", "expected"),
    [
        ("Hello {first_name}", {}, "Hello"),
        ("Hello {first_name}", {"first_name": None}, "Hello"),
        ("Hello {first_name}", {"first_name": ""}, "Hello"),
        ("Hello {first_name}", {"first_name": "   "}, "Hello"),
        ("Hello {first_name}", {"first_name": " Ana "}, "Hello Ana"),
        ("Hi {first_name}, welcome", {}, "Hi, welcome"),
        ("Bonjour {first_name} !", {}, "Bonjour !"),
        ("{first_name} welcome", {}, "welcome"),
        ("{first_name}", {}, ""),
        ("Hi {first_name} {store_name} deals", {}, "Hi deals"),
        ("Hi {first_name} {store_name} deals", {"store_name": "Shop"}, "Hi Shop deals"),
        ("x{first_name} y", {}, "x y"),
        ("Line\n{first_name} here", {}, "Line\nhere"),
        ("({first_name})", {}, "()"),
        ("{first_name}{store_name}", VALUES, "MarieRue Saint-Denis"),
    ],
)
def test_missing_values_render_as_nothing_without_double_spaces(
    template: str, values: dict, expected: str
) -> None:
    assert fill(template, values) == expected


@pytest.mark.parametrize(
    "template",
    [
        "{50% off}",
        "{} {0} {firstname} {first_name!r} {{first_name}}",
        "{store_name:>10}",
        "unbalanced { and }",
    ],
)
def test_other_braces_are_left_alone(template: str) -> None:
    rendered = fill(template, VALUES)
    for literal in ("{50% off}", "{}", "{0}", "{firstname}", "{first_name!r}", "{store_name:>10}"):
        if literal in template:
            assert literal in rendered
    if "{{first_name}}" in template:
        assert "{Marie}" in rendered


def test_values_are_not_rescanned() -> None:
    values = {"first_name": "{store_name}", "store_name": "{first_name}"}
    assert fill("{first_name} at {store_name}", values) == "{store_name} at {first_name}"


TOKENS = st.sampled_from(["{first_name}", "{store_name}", " ", "a", "{", "}"])
VALUE = st.one_of(st.none(), st.text(alphabet="ab ", max_size=4))


@given(template=st.lists(TOKENS, max_size=12).map("".join), first=VALUE, store=VALUE)
def test_a_placeholder_never_survives(template: str, first: str | None, store: str | None) -> None:
    rendered = fill(template, {"first_name": first, "store_name": store})
    assert "{first_name}" not in rendered
    assert "{store_name}" not in rendered
    if not (first or "").strip() and not (store or "").strip() and "  " not in template:
        assert "  " not in rendered


def test_no_value_never_leaves_double_spaces() -> None:
    template = "A {first_name} B {store_name} C {first_name} {store_name} D"
    assert "  " not in fill(template, {})
    assert fill(template, {}) == "A B C D"


# --- validation ------------------------------------------------------------------------------


def test_a_valid_message_is_returned_clean() -> None:
    assert validate_message(MESSAGE) == MESSAGE
    assert validate_message(MESSAGE) is not MESSAGE


@pytest.mark.parametrize(
    ("message", "path"),
    [
        (None, "message"),
        ("Hello", "message"),
        ({"translations": MESSAGE["translations"]}, "message.default_locale"),
        ({"default_locale": "english!", "translations": {}}, "message.default_locale"),
        ({"default_locale": "en"}, "message.translations"),
        ({"default_locale": "en", "translations": {}}, "message.translations"),
        ({"default_locale": "de", "translations": MESSAGE["translations"]}, "message.translations"),
        (
            {
                "default_locale": "en",
                "translations": {
                    "en": {"title": "T", "body": "B"},
                    "fr_ca": {"title": "T", "body": "B"},
                    "fr-CA": {"title": "T", "body": "B"},
                },
            },
            "message.translations.fr-CA",
        ),
        ({"default_locale": "en", "translations": {"en": "Hello"}}, "message.translations.en"),
        (
            {"default_locale": "en", "translations": {"en": {"title": "", "body": "B"}}},
            "message.translations.en.title",
        ),
        (
            {"default_locale": "en", "translations": {"en": {"title": "T", "body": "  "}}},
            "message.translations.en.body",
        ),
        (
            {"default_locale": "en", "translations": {"en": {"title": "T"}}},
            "message.translations.en.body",
        ),
        (
            {"default_locale": "en", "translations": {"en": {"title": "T" * 201, "body": "B"}}},
            "message.translations.en.title",
        ),
        (
            {"default_locale": "en", "translations": {"en": {"title": "T", "body": "B\x00"}}},
            "message.translations.en.body",
        ),
        (
            {"default_locale": "en", "translations": {"en": {"title": "T", "body": "B", "x": 1}}},
            "message.translations.en.x",
        ),
        (
            {"default_locale": "en", "translations": {"e n": {"title": "T", "body": "B"}}},
            "message.translations.e n",
        ),
        ({**MESSAGE, "sound": "ding"}, "message.sound"),
    ],
)
def test_invalid_messages(message: object, path: str) -> None:
    with pytest.raises(OfferError) as caught:
        validate_message(message)
    assert caught.value.field == path
    assert caught.value.message


def test_newlines_and_tabs_are_fine_in_a_body() -> None:
    message = {"default_locale": "en", "translations": {"en": {"title": "T", "body": "a\n\tb"}}}
    assert validate_message(message)["translations"]["en"]["body"] == "a\n\tb"
