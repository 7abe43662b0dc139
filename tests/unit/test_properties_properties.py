"""Property-based tests of the property validator: any definition, any value, it answers and is consistent."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.properties import BUILT_IN, PropertyDefinition, check_value, check_values, effective

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def definitions(draw) -> PropertyDefinition:
    kind = draw(st.sampled_from(["string", "number", "integer", "boolean", "datetime", "enum", "email", "phone", "url"]))
    fields: dict = {"name": "p", "type": kind, "required": draw(st.booleans()), "unique": draw(st.booleans())}
    if kind == "enum":
        fields["options"] = draw(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=5, unique=True))
    if kind in ("number", "integer"):
        low = draw(st.none() | st.integers(-1000, 1000))
        high = draw(st.none() | st.integers(-1000, 1000))
        if low is not None and high is not None and low > high:
            low, high = high, low
        fields.update(minimum=low, maximum=high)
    if kind in ("string", "email", "phone", "url", "enum"):
        low = draw(st.none() | st.integers(0, 10))
        high = draw(st.none() | st.integers(1, 40))
        if low is not None and high is not None and low > high:
            low, high = high, low
        fields.update(min_length=low, max_length=high)
    if kind == "string":
        fields["pattern"] = draw(st.none() | st.sampled_from(["^[a-z]+$", "\\d", "^.{0,5}$", "x|y"]))
    return PropertyDefinition(**fields)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(definitions(), json_values, st.booleans())
def test_any_value_gets_an_answer_and_every_property_one_outcome(definition, value, from_text):
    checked = check_values({**BUILT_IN, "p": definition}, {"p": value, "free": value}, from_text=from_text)
    assert checked.values["free"] == value or value != value  # NaN: unequal to itself, passed as sent
    in_values, errors = "p" in checked.values, [e for e in checked.errors if e.property == "p"]
    assert in_values != bool(errors)  # a value is applied or refused, never both, never neither
    for error in errors:
        assert error.rule in ("type", "required", "minimum", "maximum", "min_length", "max_length", "pattern", "options")
        assert error.reason


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(definitions(), json_values)
def test_accepted_values_are_stable_and_obey_every_constraint(definition, value):
    checked = check_values({"p": definition}, {"p": value})
    if "p" not in checked.values or checked.values["p"] is None:
        return
    kept = checked.values["p"]
    assert check_value(definition, kept) == kept  # normalising twice changes nothing
    if definition.minimum is not None:
        assert kept >= definition.minimum
    if definition.maximum is not None:
        assert kept <= definition.maximum
    if definition.max_length is not None and isinstance(kept, str):
        assert len(kept) <= definition.max_length
    if definition.options is not None:
        assert kept in definition.options


@settings(deadline=None)
@given(st.integers(-(2**63), 2**63 - 1), st.integers(-100, 100), st.integers(0, 100))
def test_integers_inside_the_bounds_pass_and_outside_fail_naming_the_bound(value, low, span):
    definition = PropertyDefinition(name="n", type="integer", minimum=low, maximum=low + span)
    checked = check_values({"n": definition}, {"n": value})
    if low <= value <= low + span:
        assert checked.values == {"n": value}
    else:
        assert [e.rule for e in checked.errors] == ["minimum" if value < low else "maximum"]


@settings(deadline=None)
@given(st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False))
def test_numbers_round_trip_through_text(value):
    definition = PropertyDefinition(name="n", type="number")
    assert check_values({"n": definition}, {"n": repr(value)}, from_text=True).values == {"n": value}


@settings(deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "email"]), st.integers(1, 5), st.booleans()), max_size=12), st.randoms())
def test_effective_definitions_do_not_depend_on_the_order_records_are_read(records, random):
    made = [
        PropertyDefinition(name=name, type="email" if name == "email" else "string", version=version, deleted=deleted, max_length=version)
        for name, version, deleted in {(n, v): (n, v, d) for n, v, d in records}.values()
    ]
    shuffled = list(made)
    random.shuffle(shuffled)
    assert effective(made) == effective(shuffled)


# Addresses near the shapes email-validator treats specially: dots and hyphens in odd places, case, IDNA
# and non-ASCII domains, reserved names, quotes and brackets, over-long parts, more than one @.
local_parts = st.text(alphabet="abZ09._-+'\"@ <>()\\é", min_size=0, max_size=12) | st.sampled_from(["a" * 64, "b" * 65, "x" * 250])
domain_parts = st.text(alphabet="abZ09.-é", min_size=0, max_size=14) | st.sampled_from(
    [
        "example.com",
        "Example.COM",
        "localhost",
        "a.local",
        "b.invalid",
        "xn--bcher-kva.com",
        "münchen.de",
        "a.b",
        "c" * 64 + ".com",
        "[1.2.3.4]",
    ]
)
EMAIL = BUILT_IN["email"].model_copy(update={"max_length": None})  # the type check alone


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(local_parts, domain_parts, st.sampled_from(["", " ", "@"]))
def test_the_email_check_answers_what_email_validator_answers(local, domain, extra):
    """The cached fast path for plain addresses never changes the verdict or the reason."""
    from email_validator import EmailNotValidError, validate_email

    address = f"{local}@{domain}{extra}"
    try:
        validate_email(address.strip(), check_deliverability=False)
        expected = None
    except EmailNotValidError as exc:
        expected = f"not an email address: {exc}"
    try:
        check_value(EMAIL, address)
        got = None
    except Exception as exc:  # noqa: BLE001 - _Broken, compared by its reason
        got = getattr(exc, "reason", repr(exc))
    assert got == expected
