"""The loader: every shipped template loads, every invalid file gives its exact message, YAML is parsed safely."""

from __future__ import annotations

from pathlib import Path

import pytest

from snapbridge.errors import InvalidInput
from snapbridge.workflows import (
    load_data,
    load_template,
    load_templates,
    load_workflow,
    parse_document,
    published_schema,
    render_schema,
    template_names,
    template_text,
)

INVALID = Path(__file__).resolve().parents[1] / "data" / "invalid"
INVALID_FILES = sorted(INVALID.glob("*.yaml"))
ISSUE_4_TEMPLATES = {"new-customer-location", "purchase-event", "customer-sync", "location-enrich", "churn"}


def test_the_five_starter_templates_ship() -> None:
    assert set(template_names()) == ISSUE_4_TEMPLATES


@pytest.mark.parametrize("name", sorted(ISSUE_4_TEMPLATES))
def test_every_template_loads_through_the_user_loader(name: str) -> None:
    workflow = load_template(name)
    assert workflow.name == name
    assert workflow == load_workflow(template_text(name), f"{name}.yaml")
    assert workflow.enabled and workflow.description


def test_there_is_an_invalid_file_per_kind_of_mistake() -> None:
    assert len(INVALID_FILES) >= 15


@pytest.mark.parametrize("path", INVALID_FILES, ids=lambda p: p.stem)
def test_each_invalid_file_gives_its_exact_message(path: Path) -> None:
    expected = path.with_suffix(".expected.txt").read_text(encoding="utf-8").rstrip("\n")
    with pytest.raises(InvalidInput) as caught:
        load_workflow(path.read_text(encoding="utf-8"), path.name)
    assert str(caught.value) == expected


def test_every_expected_message_has_its_file() -> None:
    expected = sorted(p.name.removesuffix(".expected.txt") for p in INVALID.glob("*.expected.txt"))
    assert expected == [p.stem for p in INVALID_FILES]


def test_data_from_json_checks_the_same_way() -> None:
    with pytest.raises(InvalidInput, match=r"steps\[0\].action: unknown action"):
        load_data({"name": "x", "trigger": {"app": "gumroad", "event": "purchase"},
                   "steps": [{"id": "a", "action": "snapshots.nope.create"}]})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 1\na: 2\n", "line 2, column 1: key 'a' appears twice"),
        ("a: &x [1]\nb: *x\n", "line 2, column 4: anchors and aliases are not supported"),
        ("a: [1\n", "line 2, column 1:"),
        ("!!python/object:os.system {}\n", "line 1, column 1:"),
        ("x" * 262_145, "the document is 262145 characters long; the limit is 262144"),
    ],
)
def test_yaml_is_parsed_strictly(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_document(text)
    assert str(caught.value).startswith(message)


def test_a_document_at_the_size_limit_parses() -> None:
    assert parse_document("#" * 262_144) is None


def test_the_published_schema_is_current() -> None:
    # Regenerate with: python -m snapbridge.workflows.schema > src/snapbridge/workflows/schema.json
    assert published_schema() == render_schema()


def test_all_templates_load_together_with_unique_names() -> None:
    names = [w.name for w in load_templates()]
    assert len(names) == len(set(names)) == 5
