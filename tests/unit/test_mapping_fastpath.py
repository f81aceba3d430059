"""Mappings of text and plain paths render without Jinja, and exactly as Jinja renders them.

Each check renders a mapping twice, once as usual and once with Jinja forced, and compares the values (with
their types) or the error messages. It also asks the direct path alone: it must answer exactly the renders
Jinja completes, so a comparison never passes merely because the direct path handed everything to Jinja.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snapbridge.errors import InvalidInput
from snapbridge.workflows import (
    EVENT_SPECS,
    CustomerProfile,
    event_spec,
    load_templates,
    parse_document,
    plan_event,
    render_scope,
)
from snapbridge.workflows.budget import MappingLimits
from snapbridge.workflows.direct import GIVE_UP
from snapbridge.workflows.mapping import (
    CompiledMapping,
    MappingEngine,
    _jinja_only,
    compile_mapping,
    default_engine,
)

DATA = Path(__file__).resolve().parents[1] / "data"
PROFILE = CustomerProfile(email="ada@example.com", name="Ada Lovelace", plan="Pro", customer_id="cus_ada",
                          location_id="loc_1", tags=("vip",), first_seen_at=datetime(2024, 5, 1, tzinfo=UTC))
LOCATION = event_spec("snapshots", "location.updated").sample_event().model_dump(mode="json")["location"]
# What earlier steps of the starters may have answered: nothing, empty lists, a found or a created location.
OUTPUTS: tuple[dict[str, object], ...] = (
    {},
    {"find": [], "create": None, "update": None},
    {"find": [LOCATION], "create": None, "update": LOCATION},
    {"find": [], "create": LOCATION, "update": None},
    {"find": None, "create": [LOCATION], "update": "loc_7d1f3a"},
)
SMALL = MappingEngine(MappingLimits(max_value_chars=48))


def outcome(mapping: CompiledMapping, scope: Mapping[str, object]) -> tuple[str, str]:
    try:
        value = mapping.render(scope)
    except InvalidInput as exc:
        return ("error", str(exc))
    # repr tells 1, 1.0 and True apart, and shows nested values with their order.
    return ("value", f"{type(value).__name__}: {value!r}")


def compare(mapping: CompiledMapping, scope: Mapping[str, object]) -> tuple[str, str]:
    """Both renders agree; the direct path (if any) answers exactly when Jinja succeeds. Jinja's outcome."""
    usual = outcome(mapping, scope)
    with _jinja_only():
        jinja = outcome(mapping, scope)
    assert usual == jinja, mapping.source
    if mapping.direct:
        answered = mapping._direct.render(scope) is not GIVE_UP  # type: ignore[union-attr]
        assert answered == (jinja[0] == "value"), (mapping.source, jinja)
    return jinja


def strings_in(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from strings_in(key)
            yield from strings_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings_in(item)


def mapping_sources() -> list[str]:
    """Every text of the starter templates and of the workflow documents under tests/data, once each."""
    found: list[str] = []
    for workflow in load_templates():
        found.extend(strings_in(workflow.trigger.filter))
        for step in workflow.steps:
            found.extend(strings_in(step.condition))
            found.extend(strings_in(dict(step.input)))
    for path in sorted([*DATA.glob("workflows/**/*.yaml"), *DATA.glob("invalid/*.yaml")]):
        try:
            found.extend(strings_in(parse_document(path.read_text(encoding="utf-8"))))
        except InvalidInput:
            continue  # not YAML at all: it holds no mapping to compare
    return list(dict.fromkeys(found))


def compiled_sources() -> list[CompiledMapping]:
    compiled = []
    for source in mapping_sources():
        try:
            compiled.append(compile_mapping(source))
        except InvalidInput:
            continue  # refused when compiling, before either way of rendering
    return compiled


def scopes() -> Iterator[dict[str, object]]:
    for spec in EVENT_SPECS:
        event = spec.sample_event()
        for profile in (None, PROFILE):
            for outputs in OUTPUTS:
                yield render_scope(event, profile, outputs)


def test_starter_and_data_mappings_render_alike_for_every_sample_event() -> None:
    compiled = compiled_sources()
    direct = {m.source for m in compiled if m.direct}
    # The shapes the direct path exists for are among them, and more than a few.
    assert {"{{ event.customer.email }}", "{{ profile.location_id }}", "{{ steps.find.output[0].location_id }}",
            "gumroad-sale-{{ event.sale.sale_id }}", "snapshots.events.create"} <= direct
    assert {"{{ profile.customer_id | default(event.customer.email) }}",
            "{{ event.sale.price_cents | cents_to_money('usd') }}",
            "{{ event.customer.country_code | default(event.customer.country) | region_for_country }}"} <= direct
    assert {"{{ not event.sale.test }}", "{{ event.type != 'refund' or event.full_refund }}",
            "{{ event.location.external_id is not none and '@' in event.location.external_id }}",
            "{{ steps.find.output | length == 0 }}"} <= direct
    # Arithmetic, conditional expressions and statements stay with Jinja.
    assert "{{ 'refunded' if event.type == 'refund' else 'cancelled' if event.type == 'cancellation' else 'ended' }}" \
        not in direct
    answered: Counter[str] = Counter()
    for scope in scopes():
        for mapping in compiled:
            answered[compare(mapping, scope)[0]] += 1
    assert answered["value"] > 0 and answered["error"] > 0


def test_plans_of_the_starters_are_the_same_with_jinja_forced() -> None:
    templates = load_templates()
    for spec in EVENT_SPECS:
        for profile in (None, PROFILE):
            usual = plan_event(spec.sample_event(), profile, templates)
            with _jinja_only():
                assert plan_event(spec.sample_event(), profile, templates) == usual


SCOPE: dict[str, object] = {
    "event": {"sale": {"price_cents": 1500, "email": "ada@example.com", "full_name": None, "test": False,
                       "tags": ["a", "b"], "custom_fields": {"Spouse name": "Jo"}, "ratio": 0.5}},
    "profile": {"email": "ada@example.com", "tags": []},
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ event.sale.price_cents }}", ("value", "int: 1500")),
        ("{{ event.sale.full_name }}", ("value", "NoneType: None")),
        ("{{ event.sale.test }}", ("value", "bool: False")),
        ("{{ event.sale.ratio }}", ("value", "float: 0.5")),
        ("{{ event.sale.tags }}", ("value", "list: ['a', 'b']")),
        ("{{ event.sale.tags[1] }}", ("value", "str: 'b'")),
        ("{{ event.sale.tags.1 }}", ("value", "str: 'b'")),
        ("{{ event.sale.email[0] }}", ("value", "str: 'a'")),
        ("{{ event.sale.custom_fields['Spouse name'] }}", ("value", "str: 'Jo'")),
        ("{{ event.sale.price_cents }}\n", ("value", "int: 1500")),
        ("name: {{ event.sale.full_name }}!", ("value", "str: 'name: !'")),
        ("{{ event.sale.test }}/{{ event.sale.tags }}", ("value", 'str: \'false/["a", "b"]\'')),
        ("plain text", ("value", "str: 'plain text'")),
        ("  {{- event.sale.price_cents -}}  ", ("value", "int: 1500")),
        ("{{ event.sale.nope }}",
         ("error", "event.sale.nope is undefined; known fields: custom_fields, email, full_name, price_cents, "
                   "ratio, tags, test")),
        ("x {{ event.sale.tags[2] }}", ("error", "event.sale.tags has no item 2 (it has 2)")),
        ("{{ events.sale }}", ("error", "events is undefined; known names: event, profile")),
        ("{{ profile.tags.first }}", ("error", "a list has no field 'first'")),
        ("{{ event.sale.price_cents.cents }}", ("error", "a number has no field 'cents'")),
        # Filters over paths, with path and literal arguments, chained.
        ("{{ event.sale.email | upper }}", ("value", "str: 'ADA@EXAMPLE.COM'")),
        ("{{ event.sale.price_cents | cents_to_money('usd') }}", ("value", "str: '15.00'")),
        ("{{ event.sale.nope | default(event.sale.email) | upper }}", ("value", "str: 'ADA@EXAMPLE.COM'")),
        ("{{ event.sale.full_name | default(event.sale.email) }}", ("value", "str: 'ada@example.com'")),
        ("{{ event.sale.nope | default('none given') }}", ("value", "str: 'none given'")),
        ("to {{ event.sale.email | upper }}.", ("value", "str: 'to ADA@EXAMPLE.COM.'")),
        ("{{ event.sale.tags | length }}", ("value", "int: 2")),
        ("{{ event.sale.nope | upper }}",
         ("error", "event.sale.nope is undefined; known fields: custom_fields, email, full_name, price_cents, "
                   "ratio, tags, test")),
        ("{{ event.sale.nope | default(event.sale.gone) }}",
         ("error", "event.sale.gone is undefined; known fields: custom_fields, email, full_name, price_cents, "
                   "ratio, tags, test")),
        ("{{ event.sale.email | iso8601 }}", ("error", "iso8601 cannot read 'ada@example.com' as an ISO 8601 time")),
        # Operators and tests.
        ("{{ not event.sale.test }}", ("value", "bool: True")),
        ("{{ event.sale.price_cents == 1500 and event.sale.email }}", ("value", "str: 'ada@example.com'")),
        ("{{ event.sale.test or event.sale.tags }}", ("value", "list: ['a', 'b']")),
        ("{{ event.sale.test and event.sale.nope }}", ("value", "bool: False")),
        ("{{ 'a' in event.sale.tags and 'z' not in event.sale.tags }}", ("value", "bool: True")),
        ("{{ event.sale.full_name is none }}", ("value", "bool: True")),
        ("{{ event.sale.email is not none and '@' in event.sale.email }}", ("value", "bool: True")),
        ("{{ event.sale.tags | length >= 2 }}", ("value", "bool: True")),
        ("{{ not event.sale.nope }}",
         ("error", "event.sale.nope is undefined; known fields: custom_fields, email, full_name, price_cents, "
                   "ratio, tags, test")),
        ("{{ event.sale.price_cents > 'x' }}", ("error", "cannot render the mapping")),
        ("{{ event.sale.tags | cents_to_money }}",
         ("error", "cents_to_money expects a whole number of minor units, got a list")),
    ],
)
def test_direct_paths_render_values_and_errors_as_jinja_does(source: str, expected: tuple[str, str]) -> None:
    mapping = compile_mapping(source)
    assert mapping.direct
    assert compare(mapping, SCOPE) == expected


@pytest.mark.parametrize(
    "source",
    ["{{ event.sale.tags[-1] }}", "{{ event.sale.tags[0:1] }}", "{{ event.sale.email | default(event.sale.tags[-1]) }}",
     "{{ event.sale.price_cents | cents_to_money(currency='usd') }}", "{{ event.sale.price_cents * 2 > 1 }}",
     "{{ 1 < event.sale.price_cents < 2000 }}", "{{ event.sale.email ~ 'x' }}", "{{ 0 == 0 }}",
     "{{ false and event.sale.email }}", "{{ true or event.sale.email }}", "{{ not (none and event.sale.tags) }}",
     "{{ event.sale.tags is sameas event.sale.tags }}",
     "{{ self }}", "{{ loop.index }}", "{{ range(2) }}", "{{ event.sale['tags'][event.sale.price_cents] }}",
     "{% if event.sale.test %}x{% endif %}", "{{ event.sale.price_cents + 1 }}", "{{ 'text' }}",
     "{{ event.sale.tags[True] }}"],
)
def test_anything_else_stays_with_jinja(source: str) -> None:
    mapping = compile_mapping(source)
    assert not mapping.direct
    compare(mapping, SCOPE)


def test_the_value_limit_holds_at_the_limit_and_one_past_it() -> None:
    limit = SMALL.limits.max_value_chars
    for size, expected in ((limit, "value"), (limit + 1, "error")):
        # A list counts 2 for its brackets and 1 per item, besides the items themselves.
        scope = {"event": {"text": "é" * size, "list": ["x" * (size - 3)]}}
        assert compare(SMALL.compile("{{ event.text }}"), scope)[0] == expected
        assert compare(SMALL.compile("{{ event.list }}"), scope)[0] == expected
    for size, expected in ((limit - 2, "value"), (limit - 1, "error")):
        assert compare(SMALL.compile("<{{ event.text }}>"), {"event": {"text": "x" * size}})[0] == expected
    over = {"event": {"text": "x" * (limit + 1)}}
    assert compare(SMALL.compile("{{ event.text }}"), over) == (
        "error", f"the value is larger than the limit of {limit} characters")
    assert compare(SMALL.compile("{{ event.text }}!"), over) == (
        "error", f"a value is longer than the limit of {limit} characters")


# Data as mappings see it: JSON-like values with unicode, awkward keys, big numbers and texts over the limits.
NAMES = st.sampled_from(["a", "b", "sale", "price_cents", "é", "ünï", "Spouse name", "0", "items", "keys", "_x",
                         "it's", 'q"uote', "back\\slash", "}}"])
KEYS = st.one_of(NAMES, NAMES, NAMES, st.text(max_size=4), st.integers(0, 3))
SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2**250, max_value=2**300)
           | st.floats() | st.text(max_size=12) | st.text(min_size=20, max_size=60)
           | st.sampled_from(["x" * 65536, "y" * 65537]))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)
OBJECTS = st.dictionaries(KEYS, VALUES, max_size=5)
SCOPES = st.fixed_dictionaries({"event": OBJECTS, "profile": OBJECTS, "steps": VALUES})
ATTRS = st.sampled_from(["a", "b", "sale", "price_cents", "é", "ünï", "items", "keys", "get", "x0", "none",
                         "true"])
TEXT = st.text(alphabet=st.characters(blacklist_characters="{"), max_size=24)


@st.composite
def paths(draw: st.DrawFn, scope: Mapping[str, object]) -> str:
    """`name.field[0]['key']…`, often following keys that are there, sometimes not."""
    known = draw(st.integers(0, 9)) > 0
    name = draw(st.sampled_from(list(scope) if known else ["nope", "self", "loop", "range"]))
    value = scope.get(name)
    source = name
    for _ in range(draw(st.integers(0, 3))):
        present = [k for k in value if isinstance(k, str)] if isinstance(value, Mapping) else (
            list(range(len(value))) if isinstance(value, list | tuple | str) else [])
        follow = draw(st.integers(0, 4)) > 0
        if follow and not present:
            break
        key = draw(st.sampled_from(present) if follow else ATTRS | KEYS)
        if isinstance(key, str) and key.isidentifier() and draw(st.booleans()):
            source += f".{key}"
        else:
            source += f"[{key!r}]"
        try:
            value = value[key]  # type: ignore[index]
        except (LookupError, TypeError):
            value = None
    return source


FILTERS = st.sampled_from(["upper", "lower", "trim", "length", "first", "last", "iso8601", "to_int", "slug",
                           "tag_list", "region_for_country", "timezone_for_country", "cents_to_money('usd')",
                           "cents_to_money('JPY')", "default('none')", "default(0)", "default(none)", "slug(3)"])


@st.composite
def filtered(draw: st.DrawFn, scope: Mapping[str, object]) -> str:
    """A path, often through a chain of filters whose arguments are literals or other paths."""
    source = draw(paths(scope))
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.integers(0, 3)) == 0:
            source += f" | default({draw(paths(scope))})"
        else:
            source += f" | {draw(FILTERS)}"
    return source


LITERALS = st.sampled_from(["0", "1", "'a'", "'@'", "none", "true", "''", "[]"])
OPERATORS = st.sampled_from(["==", "!=", "<", ">=", "in", "not in"])


@st.composite
def expressions(draw: st.DrawFn, scope: Mapping[str, object]) -> str:
    """A filtered path, or `not`, a test, a comparison, `and`/`or` over such paths and literals."""
    operand = draw(filtered(scope)) if draw(st.integers(0, 3)) else draw(LITERALS)
    kind = draw(st.integers(0, 6))
    if kind == 0:
        return f"not {draw(filtered(scope))}"
    if kind == 1:
        return f"{draw(filtered(scope))} is {draw(st.sampled_from(['none', 'not none', 'defined', 'string']))}"
    if kind == 2:
        return f"{operand} {draw(OPERATORS)} {draw(filtered(scope)) if draw(st.booleans()) else draw(LITERALS)}"
    if kind == 3:
        return f"{draw(filtered(scope))} {draw(st.sampled_from(['and', 'or']))} {operand}"
    if kind == 4:  # a constant left side may decide it, and Jinja folds that when compiling
        return f"{operand} {draw(st.sampled_from(['and', 'or']))} {draw(filtered(scope))}"
    if kind == 5:
        return f"{draw(filtered(scope))} is sameas {draw(filtered(scope))}"
    return draw(filtered(scope))


@st.composite
def mappings(draw: st.DrawFn, scope: Mapping[str, object]) -> str:
    """One expression, or text around expressions, with and without whitespace control."""
    if draw(st.booleans()):
        return f"{{{{ {draw(expressions(scope))} }}}}"
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        left, right = draw(st.sampled_from([("{{ ", " }}"), ("{{- ", " -}}"), ("{{", "}}")]))
        parts.append(f"{draw(TEXT)}{left}{draw(expressions(scope))}{right}")
    return "".join(parts) + draw(TEXT)


@settings(max_examples=600, deadline=None)
@given(st.data(), SCOPES, st.sampled_from(["default", "small"]))
def test_generated_paths_and_values_render_alike(data: st.DataObject, scope: dict[str, object],
                                                 engine: str) -> None:
    source = data.draw(mappings(scope))
    try:
        mapping = (default_engine() if engine == "default" else SMALL).compile(source)
    except InvalidInput:
        return  # refused when compiling (an internal name, say), before either way of rendering
    compare(mapping, scope)
