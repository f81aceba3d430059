"""The mapping language: native values, text, missing paths, the sandbox and every limit."""

from __future__ import annotations

import itertools

import pytest

from snapbridge.errors import InvalidInput
from snapbridge.workflows.mapping import MappingEngine, MappingLimits, compile_mapping

SCOPE: dict[str, object] = {
    "event": {
        "type": "purchase",
        "sale": {
            "price_cents": 1234,
            "currency": "eur",
            "email": "ada@example.com",
            "full_name": None,
            "country": "United Kingdom",
            "test": False,
            "tags": ["Beta", " early ", "beta"],
            "custom_fields": {"Spouse name": "Jo", "format": "pdf"},
        },
    },
    "profile": {"tags": [], "segments": ["paying", "vip"], "lifetime_value_cents": 60000},
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ event.sale.price_cents }}", 1234),
        ("{{ event.sale.test }}", False),
        ("{{ event.sale.full_name }}", None),
        ("{{ event.sale.tags }}", ["Beta", " early ", "beta"]),
        ("{{ event.sale.custom_fields }}", {"Spouse name": "Jo", "format": "pdf"}),
        ("{{ event.sale.price_cents / 100 }}", 12.34),
        ("{{ [event.sale.email, 1] }}", ["ada@example.com", 1]),
        ("{{ {'email': event.sale.email} }}", {"email": "ada@example.com"}),
        ("{{ event.sale.price_cents }}\n", 1234),
        ("{{ '1234' }}", "1234"),
        ("{{ range(3) }}", [0, 1, 2]),
        ("{{ event.sale.tags[0] }}", "Beta"),
        ("{{ event.sale.tags[-1] }}", "beta"),
        ("{{ event.sale.tags[1:] }}", [" early ", "beta"]),
        ("{{ event.sale.custom_fields['Spouse name'] }}", "Jo"),
        ("{{ event.sale.custom_fields.format }}", "pdf"),
        ("{{ 'vip' in profile.segments }}", True),
        ("{{ profile.lifetime_value_cents >= 50000 and event.type == 'purchase' }}", True),
        ("{{ event.sale.full_name or event.sale.email }}", "ada@example.com"),
        ("{{ event.sale.email if event.sale.test else 'live' }}", "live"),
        ("{{ [1, 2] + [3] }}", [1, 2, 3]),
        ("{{ 2 ** 10 }}", 1024),
        ("{{ 7 // 2 }}", 3),
        ("{{ 7 % 4 }}", 3),
    ],
)
def test_a_single_expression_keeps_its_native_type(source: str, expected: object) -> None:
    assert compile_mapping(source).native
    assert compile_mapping(source).render(SCOPE) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("plain text", "plain text"),
        ("", ""),
        ("Order {{ event.sale.price_cents }}", "Order 1234"),
        (" {{ event.sale.price_cents }}", " 1234"),
        ("{{ event.sale.price_cents }}{{ event.sale.currency }}", "1234eur"),
        ("{{ event.sale.full_name }}|{{ event.sale.test }}|{{ true }}", "|false|true"),
        ("tags: {{ event.sale.tags }}", 'tags: ["Beta", " early ", "beta"]'),
        ("{{ event.type ~ '-' ~ event.sale.price_cents ~ none }}", "purchase-1234"),
        ("{% for t in event.sale.tags %}{{ loop.index }}={{ t | trim }};{% endfor %}",
         "1=Beta;2=early;3=beta;"),
        ("{% if event.sale.test %}test{% else %}live{% endif %}", "live"),
        ("{% set n = event.sale.price_cents * 2 %}{{ n }}", "2468"),
        ("{% for k in event.sale.custom_fields %}{{ k }},{% endfor %}", "Spouse name,format,"),
        ("{# a comment #}{{ event.type }}", "purchase"),
    ],
)
def test_anything_else_renders_to_text(source: str, expected: str) -> None:
    assert compile_mapping(source).render(SCOPE) == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ event.sale.pricecents }}",
         "event.sale.pricecents is undefined; known fields: country, currency, custom_fields, email, "
         "full_name, price_cents, tags, test"),
        ("{{ evnt.sale }}", "evnt is undefined; known names: event, profile"),
        ("{{ event.sale.custom_fields['Nick name'] }}",
         "event.sale.custom_fields['Nick name'] is undefined; known fields: Spouse name, format"),
        ("{{ event.sale.tags[3] }}", "event.sale.tags has no item 3 (it has 3)"),
        ("{{ event.sale.nope.deeper }}", "event.sale.nope is undefined"),
        ("x {{ event.sale.nope }}", "event.sale.nope is undefined"),
        ("{% if event.sale.nope %}x{% endif %}", "event.sale.nope is undefined"),
        ("{{ event.sale.nope | upper }}", "event.sale.nope is undefined"),
        ("{{ event.sale.email.domain }}", "text has no field 'domain'"),
        ("{{ event.sale.email.upper }}", "text has no field 'upper'"),
    ],
)
def test_a_missing_value_names_its_path(source: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        compile_mapping(source).render(SCOPE)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ event.sale.nope | default('n/a') }}", "n/a"),
        ("{{ event.sale.nope.deeper | default('n/a') }}", "n/a"),
        ("{{ event.sale.full_name | default(event.sale.email) }}", "ada@example.com"),
        ("{{ '' | default('empty', true) }}", "empty"),
        ("{{ event.sale.nope is defined }}", False),
        ("{{ event.sale.email is defined }}", True),
    ],
)
def test_default_and_defined_handle_missing_values(source: str, expected: object) -> None:
    assert compile_mapping(source).render(SCOPE) == expected


HOSTILE: list[tuple[str, str]] = [
    ("{{ ''.__class__ }}", "access to internal attribute '__class__' is not allowed"),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "is not allowed"),
    ("{{ event.__class__ }}", "access to internal attribute '__class__' is not allowed"),
    ("{{ event['__class__'] }}", "access to internal attribute '__class__' is not allowed"),
    ("{{ range.__globals__ }}", "access to internal attribute '__globals__' is not allowed"),
    ("{{ _internal }}", "access to internal name '_internal' is not allowed"),
    ("{{ event.mro() }}", "only range() can be called in a mapping"),
    ("{{ event.sale.email.format(1) }}", "only range() can be called in a mapping"),
    ("{{ event.sale.email.upper() }}", "only range() can be called in a mapping"),
    ("{{ lipsum() }}", "only range() can be called in a mapping"),
    ("{{ cycler }}", "cycler is undefined"),
    ("{{ namespace }}", "namespace is undefined"),
    ("{{ self }}", "a TemplateReference cannot be used as a value"),
    ("{{ range }}", "cannot be used as a value"),
    ("{% import 'os' as os %}", "'{% import %}' is not allowed in a mapping"),
    ("{% from 'x' import y %}", "'{% from … import %}' is not allowed in a mapping"),
    ("{% include 'x' %}", "'{% include %}' is not allowed in a mapping"),
    ("{% extends 'x' %}", "'{% extends %}' is not allowed in a mapping"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "'{% macro %}' is not allowed in a mapping"),
    ("{% for x in [[1]] recursive %}{{ loop([x]) }}{% endfor %}", "recursive loops are not allowed"),
    ("{% set x %}{{ 1 }}{% endset %}", "'{% set … endset %}' is not allowed in a mapping"),
    ("{% filter upper %}x{% endfilter %}", "'{% filter %}' is not allowed in a mapping"),
    ("{{ 'a' * 10**9 }}", "repeating text 1000000000 times exceeds the limit of 65536 characters"),
    ("{{ [event.sale] * 10**9 }}", "repeating a list 1000000000 times exceeds the limit"),
    ("{{ '%999999999d' % 1 }}", "'%' works on numbers only"),
    ("{{ 10 ** 10 ** 10 }}", "the power would have more than 256 bits"),
    ("{{ (2 ** 200) * (2 ** 100) }}", "the product would have more than 256 bits"),
    ("{{ 3 ** 200 }}", "the result of '**' has more than 256 bits"),
    ("{{ 1 / 0 }}", "division by zero"),
    ("{% for i in range(10**9) %}x{% endfor %}", "range() of 1000000000 numbers is over the limit of 1000"),
    ("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
     "loops ran more than 10000 iterations"),
    ("{% for i in range(1000) %}{% for c in event.sale.email * 100 %}{% endfor %}{% endfor %}",
     "loops ran more than 10000 iterations"),
    ("{% set a = 'a' * 65536 %}{{ a ~ a }}", "joined text would be longer than the limit of 65536 chara"),
    ("{% set a = 'a' * 65536 %}{{ a + 'b' }}", "joined text would be longer than the limit of 65536 chara"),
    ("{% set a = 'a' * 60000 %}{{ a }}{{ a }}", "the text is longer than the limit of 65536 characters"),
    ("{% set a = ['a' * 60000] %}{{ a + a }}", "joined list would be larger than the limit"),
    ("{% set a = 'a' * 40000 %}{{ [a, a] }}", "a value is longer than the limit of 65536 characters"),
    ("{{ ['a' * 40000, 'a' * 40000] }}", "the value is larger than the limit of 65536 characters"),
    ("{% set a = 'a' * 40000 %}{{ [a, a] | length }}", "length: input is larger than the limit"),
    ("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}", "the mapping is"),
    ("{{ " + "[" * 40 + "1" + "]" * 40 + " }}", "expressions are nested deeper than 32 levels"),
    ("{{ " + "(" * 1000 + "1" + ")" * 1000 + " }}", "the mapping is nested too deeply"),
    ("{{ x" + " | trim" * 40 + " }}", "expressions are nested deeper than 32 levels"),
    ("{{ 'x' | nope }}", "unknown filter 'nope'; known filters: cents_to_money, default, first, float, int"),
    ("{{ 'x' is nope }}", "unknown test 'nope'; known tests:"),
    ("{{ 'x' | trim(*[1]) }}", "arguments cannot be unpacked with * or ** in a mapping"),
    ("{% for x in 5 %}{% endfor %}", "cannot loop over a number"),
    ("{{ event.sale.email + 1 }}", "cannot apply '+' to text and a number"),
    ("{{ 'x' ~ range }}", "cannot be written into text"),
    ("{{ x", "syntax error in line 1:"),
]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(("source", "message"), HOSTILE, ids=[s[:40] for s, _ in HOSTILE])
def test_a_hostile_mapping_fails_cleanly(source: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        compile_mapping(source).render(SCOPE)
    assert message in str(caught.value)


@pytest.mark.timeout(10)
def test_a_giant_input_value_is_refused() -> None:
    scope = {"event": {"blob": "x" * 10_000_000}}
    sources = ("{{ event.blob }}", "{{ event.blob | lower }}", "{{ event.blob ~ '' }}", "x{{ event.blob }}")
    for source in sources:
        with pytest.raises(InvalidInput, match="limit of 65536 characters"):
            compile_mapping(source).render(scope)
    assert compile_mapping("{{ event.blob[:3] }}").render(scope) == "xxx"


def test_a_slow_render_stops_at_the_deadline() -> None:
    ticks = itertools.count()
    engine = MappingEngine(MappingLimits(max_seconds=5.0), clock=lambda: float(next(ticks)))
    with pytest.raises(InvalidInput, match=r"rendering took longer than 5.0 s"):
        engine.render("{% for i in range(100) %}{{ i }}{% endfor %}", {})


def test_rendering_twice_gives_the_same_value_and_compiling_is_cached() -> None:
    engine = MappingEngine()
    first = engine.compile("{{ event.sale.price_cents }}")
    assert engine.compile("{{ event.sale.price_cents }}") is first
    assert first.render(SCOPE) == first.render(SCOPE) == 1234


def test_the_cache_is_bounded() -> None:
    engine = MappingEngine(MappingLimits(cache_size=2))
    first = engine.compile("{{ 1 }}")
    engine.compile("{{ 2 }}")
    engine.compile("{{ 3 }}")
    assert engine.compile("{{ 1 }}") is not first


def test_references_list_the_paths_read_minus_local_names() -> None:
    mapping = compile_mapping(
        "{% set n = event.sale.price_cents %}{% for t in profile.tags %}{{ t }}{{ loop.index }}{% endfor %}"
        "{{ n }}{{ event.sale.custom_fields['Spouse name'] }}{{ steps.create.output.location_id }}"
        "{{ event.sale.tags[0] }}{{ event.sale.tags[n] }}"
    )
    assert mapping.references == (
        ("event", "sale", "price_cents"),
        ("profile", "tags"),
        ("event", "sale", "custom_fields", "Spouse name"),
        ("steps", "create", "output", "location_id"),
        ("event", "sale", "tags", 0),
        ("event", "sale", "tags"),
    )


def test_every_problem_of_a_mapping_is_reported_at_once() -> None:
    with pytest.raises(InvalidInput) as caught:
        compile_mapping("{{ a.__x }}{{ b | nope }}{% include 'y' %}")
    message = str(caught.value)
    assert "'__x'" in message and "'nope'" in message and "include" in message


LIMITS = MappingLimits(
    max_source_chars=100, max_value_chars=50, max_range=10, max_iterations=20, max_int_bits=16
)


@pytest.mark.parametrize(
    ("source", "fails"),
    [
        ("{# " + "x" * 87 + " #}{{ 1 }}", False),
        ("{# " + "x" * 88 + " #}{{ 1 }}", True),
        ("{{ 'a' * 50 }}", False),
        ("{{ 'a' * 51 }}", True),
        ("{{ 'a' * 25 ~ 'a' * 25 }}", False),
        ("{{ 'a' * 25 ~ 'a' * 26 }}", True),
        ("{{ range(10) | length }}", False),
        ("{{ range(11) | length }}", True),
        ("{% for i in range(5) %}{% for j in range(3) %}{% endfor %}{% endfor %}", False),
        ("{% for i in range(7) %}{% for j in range(2) %}{% endfor %}{% endfor %}", True),
        ("{{ 2 ** 15 }}", False),
        ("{{ 2 ** 16 }}", True),
    ],
)
def test_each_limit_holds_at_the_limit_and_fails_one_past_it(source: str, fails: bool) -> None:
    engine = MappingEngine(LIMITS)
    if fails:
        with pytest.raises(InvalidInput):
            engine.render(source, {})
    else:
        engine.render(source, {})
