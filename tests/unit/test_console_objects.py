"""The object pages' form values: typed by the object type's property definitions, else numbers when they read as
one; text a definition cannot read goes as it is, for the API to refuse by name."""

from __future__ import annotations

from api.console.pages.objects import _value, object_path

DEAL = {"name": "deal", "properties": [{"name": "code", "type": "string"}, {"name": "amount", "type": "integer"}]}


def test_form_values_follow_the_types_definitions():
    assert _value(DEAL, "code", "00123") == "00123"  # a string property keeps its text
    assert _value(DEAL, "amount", "5000") == 5000
    assert _value(DEAL, "amount", "lots") == "lots"  # the API answers 422 naming amount and its rule
    assert _value(DEAL, "free", "12.5") == 12.5 and _value(DEAL, "free", "twelve") == "twelve"
    assert _value(None, "free", "7") == 7


def test_paths_quote_ids():
    assert object_path("deal", "a/b c") == "/objects/deal/a%2Fb%20c"
