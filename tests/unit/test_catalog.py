"""The catalog checked against the references, against the hand-written clients, and against itself."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from snapbridge.catalog import (
    APPS,
    DERIVED_TRIGGERS,
    GUMROAD_TRIGGERS,
    SNAPSHOTS_TRIGGERS,
    BodyEncoding,
    Kind,
    Operation,
    ParamIn,
    TokenKind,
    Trigger,
    TriggerSource,
    all_records,
    counts,
    get_action,
    get_record,
    get_trigger,
    highlevel_operations,
    highlevel_rows,
    render_markdown,
    select,
)
from snapbridge.cli.catalog import catalog_command
from snapbridge.connectors.gumroad import ALL_OPERATIONS as GUMROAD_OPERATIONS
from snapbridge.connectors.gumroad import Source
from snapbridge.connectors.snapshots import OPERATIONS as SNAPSHOTS_OPERATIONS
from snapbridge.errors import InvalidInput
from snapbridge.sandbox.highlevel import handler_for

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT.parent / "shared" / "reference" / "highlevel-operations.tsv"
PACKAGED = ROOT / "src" / "snapbridge" / "catalog" / "data" / "highlevel-operations.tsv"

# snapshots-api.md §3.6 "distinct in TSV" per area.
HIGHLEVEL_AREA_ROWS = {"saas": 27, "snapshots": 4, "locations": 32, "contacts": 33}
# gumroad-api.md §2: 38 classic + resend_receipt and two payouts (later docs) + licenses/rotate (curl doc).
GUMROAD_BY_SOURCE = {Source.CLASSIC: 38, Source.LATER: 3, Source.CURL: 1}
# gumroad-api.md §6: the eight resource names.
GUMROAD_RESOURCES = ("sale", "refund", "dispute", "dispute_won", "cancellation", "subscription_updated",
                     "subscription_ended", "subscription_restarted")
# snapshots-contract.md "Scopes": every endpoint with the scope that grants it.
CONTRACT = {
    ("GET", "/locations"): "saas/location.read", ("GET", "/locations/{location_id}"): "saas/location.read",
    ("POST", "/locations"): "saas/location.write", ("PUT", "/locations/{location_id}"): "saas/location.write",
    ("POST", "/events"): "events.write", ("POST", "/events/batch"): "events.write",
    ("GET", "/events"): "events.readonly", ("PUT", "/customers/{customer_id}"): "customers.write",
    ("GET", "/customers/{customer_id}"): "customers.readonly", ("GET", "/customers"): "customers.readonly",
}
CONTRACT_WEBHOOKS = ("LocationCreate", "LocationUpdate", "CustomerUpdate")
# The derived events the workflows issue names.
DERIVED_EVENTS = ("customer.created", "customer.updated", "purchase", "subscription.started",
                  "subscription.updated", "subscription.ended", "subscription.restarted", "cancellation",
                  "refund", "dispute", "customer.segment_changed", "location.created", "location.updated")


def _ops(app: str) -> list[Operation]:
    return [r for r in all_records() if isinstance(r, Operation) and r.app == app]


# ---- counts per area -------------------------------------------------------------------------------------


def test_counts_per_app_and_kind() -> None:
    assert counts() == {
        ("gumroad", Kind.ACTION): 42, ("gumroad", Kind.TRIGGER): 9,
        ("snapshots", Kind.ACTION): 10, ("snapshots", Kind.TRIGGER): 3,
        ("highlevel", Kind.ACTION): 96,
        ("snapbridge", Kind.TRIGGER): 13,
    }
    assert len(all_records()) >= 126


def test_gumroad_covers_every_documented_endpoint_and_webhook() -> None:
    assert Counter(op.source for op in GUMROAD_OPERATIONS) == GUMROAD_BY_SOURCE
    assert len(_ops("gumroad")) == sum(GUMROAD_BY_SOURCE.values())
    subscriptions = [t for t in GUMROAD_TRIGGERS if t.source is TriggerSource.RESOURCE_SUBSCRIPTION]
    assert tuple(t.event for t in subscriptions) == GUMROAD_RESOURCES
    assert [t.event for t in GUMROAD_TRIGGERS if t.source is TriggerSource.PING] == ["sale"]
    create = get_action("gumroad.resource_subscriptions.create")
    assert create.param("resource_name") is not None
    assert create.param("resource_name").enum == GUMROAD_RESOURCES  # type: ignore[union-attr]


def test_snapshots_covers_the_contract() -> None:
    found = {(op.method, op.path): op.scopes for op in _ops("snapshots")}
    assert found == {k: (v,) for k, v in CONTRACT.items()}
    assert tuple(t.event for t in SNAPSHOTS_TRIGGERS) == CONTRACT_WEBHOOKS
    assert all(op.idempotency_header == (op.method != "GET") for op in _ops("snapshots"))


def test_derived_triggers_are_the_workflow_events() -> None:
    assert tuple(t.event for t in DERIVED_TRIGGERS) == DERIVED_EVENTS
    assert all(t.app == "snapbridge" and t.source is TriggerSource.DERIVED for t in DERIVED_TRIGGERS)
    for trigger in DERIVED_TRIGGERS:
        schema = trigger.payload_schema()
        assert schema["type"] == "object" and schema["required"], trigger.name


def test_highlevel_per_area_counts_equal_the_tsv() -> None:
    rows = highlevel_rows()
    assert Counter(row["area"] for row in rows) == HIGHLEVEL_AREA_ROWS
    assert len(highlevel_operations()) == sum(HIGHLEVEL_AREA_ROWS.values())


@pytest.mark.skipif(not REFERENCE.exists(), reason="the shared reference folder is not beside this checkout")
def test_packaged_rows_are_exactly_the_reference_rows_of_the_four_areas() -> None:
    with REFERENCE.open(encoding="utf-8", newline="") as handle:
        reference = [row for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)]
    wanted = [reference[0]] + [row for row in reference[1:] if row[0] in HIGHLEVEL_AREA_ROWS]
    with PACKAGED.open(encoding="utf-8", newline="") as handle:
        packaged = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert packaged == wanted


# ---- the catalog and the references / clients agree ------------------------------------------------------


@pytest.mark.parametrize("row", highlevel_rows(), ids=lambda r: f"{r['method']} {r['path']}")
def test_each_tsv_row_is_one_record_with_its_facts(row: dict[str, str]) -> None:
    [op] = [o for o in highlevel_operations() if (o.method, o.path) == (row["method"], row["path"])]
    assert op.source == row["operationId"]
    assert op.summary == row["summary"]
    assert op.deprecated == (row["deprecated"] == "yes")
    assert op.versions == tuple(row["version_header"].split())
    assert op.version == op.versions[0]
    listed = [s.split(":", 1)[-1].strip() for s in row["scope"].split("|") if s.strip()]
    assert set(listed) <= set(op.scopes)
    assert op.scopes, "a gap in the TSV is filled with a chosen scope, noted in the record"
    if not listed:
        assert op.notes or op.name.startswith("highlevel.saas_legacy."), op.name
    if "Agency-Access" in row["token_types"].split():
        assert TokenKind.AGENCY in op.token_kinds
    if {"bearer", "Location-Access"} & set(row["token_types"].split()):
        assert TokenKind.LOCATION in op.token_kinds


@pytest.mark.parametrize("connector_op", GUMROAD_OPERATIONS, ids=lambda o: o.name)
def test_every_gumroad_client_method_has_its_record(connector_op: object) -> None:
    name, method, path = connector_op.name, connector_op.method, connector_op.path  # type: ignore[attr-defined]
    [record] = [op for op in _ops("gumroad") if op.source == f"GumroadClient.{name}"]
    assert (record.method, record.path) == (method, "/v2" + path)
    assert record.scopes == tuple(connector_op.scopes)  # type: ignore[attr-defined]
    assert bool(record.token_kinds) == connector_op.needs_token  # type: ignore[attr-defined]


@pytest.mark.parametrize("connector_op", list(SNAPSHOTS_OPERATIONS.values()), ids=lambda o: o.name)
def test_every_snapshots_client_method_has_its_record(connector_op: object) -> None:
    record = get_action(f"snapshots.{connector_op.name}")  # type: ignore[attr-defined]
    assert (record.method, record.path) == (connector_op.method, connector_op.path)  # type: ignore[attr-defined]
    assert record.scopes == (connector_op.scope,)  # type: ignore[attr-defined]
    assert record.source == f"SnapshotsClient.{connector_op.client_method}"  # type: ignore[attr-defined]


def test_no_catalog_record_lacks_a_client_method() -> None:
    gumroad = {f"GumroadClient.{op.name}" for op in GUMROAD_OPERATIONS}
    snapshots = {f"SnapshotsClient.{op.client_method}" for op in SNAPSHOTS_OPERATIONS.values()}
    assert {op.source for op in _ops("gumroad")} == gumroad
    assert {op.source for op in _ops("snapshots")} == snapshots


# ---- the records are well formed -------------------------------------------------------------------------


@pytest.mark.parametrize("record", all_records(), ids=lambda r: r.name)
def test_record_is_well_formed(record: Operation | Trigger) -> None:
    assert record.app in APPS
    assert record.summary.strip()
    json.dumps(record.input_schema() if isinstance(record, Operation) else record.payload_schema())
    if isinstance(record, Operation):
        assert record.method in {"GET", "POST", "PUT", "DELETE"}
        assert record.path.startswith("/")
        body = record.params_in(ParamIn.BODY)
        assert bool(body) == (record.body_encoding is not BodyEncoding.NONE)
        if record.method == "GET":
            assert not body and record.idempotent
        if record.app == "gumroad" and body:
            assert record.body_encoding is BodyEncoding.FORM
        if record.app != "gumroad":
            assert record.version and record.version in record.versions


def test_names_are_unique_and_stable() -> None:
    names = [r.name for r in all_records()]
    assert len(names) == len(set(names))
    # A few names other code and users rely on.
    for name in ("gumroad.sales.list", "snapshots.locations.create", "highlevel.contacts.upsert",
                 "gumroad.resource_subscription.refund", "snapbridge.customer.created"):
        assert get_record(name).name == name


@pytest.mark.parametrize(("lookup", "name", "hint"), [
    (get_action, "gumroad.sale.list", "did you mean gumroad.sales.list"),
    (get_action, "snapbridge.customer.created", "unknown action"),
    (get_trigger, "gumroad.sales.list", "unknown trigger"),
    (get_record, "zzz", "known: "),
])
def test_unknown_names_say_what_is_known(lookup: object, name: str, hint: str) -> None:
    with pytest.raises(InvalidInput, match=hint):
        lookup(name)  # type: ignore[operator]


@pytest.mark.parametrize(("app", "kind", "words", "expected"), [
    ("gumroad", None, "", 51),
    (None, Kind.TRIGGER, "", 25),
    ("highlevel", Kind.ACTION, "saas_legacy", 13),
    (None, None, "contacts upsert", 1),
    (None, None, "VIEW_SALES refund", 1),
    ("snapshots", Kind.TRIGGER, "location", 2),
    (None, None, "no-such-word", 0),
])
def test_select_filters_by_app_kind_and_every_word(app: str | None, kind: Kind | None, words: str,
                                                   expected: int) -> None:
    assert len(select(app, kind, words)) == expected


def test_select_refuses_an_unknown_app() -> None:
    with pytest.raises(InvalidInput, match="known: gumroad"):
        select("stripe")


# ---- docs and CLI ----------------------------------------------------------------------------------------


def test_docs_catalog_md_is_up_to_date() -> None:
    page = (ROOT / "docs" / "catalog.md").read_text(encoding="utf-8")
    assert page == render_markdown(), "run: snapbridge catalog --markdown > docs/catalog.md"


def test_docs_list_every_record_with_its_scopes() -> None:
    page = render_markdown()
    for record in all_records():
        line = next(line for line in page.splitlines() if line.startswith(f"| `{record.name}` |"))
        for scope in record.scopes:
            assert f"`{scope}`" in line


def test_cli_count_reports_at_least_126() -> None:
    result = CliRunner().invoke(catalog_command, ["--count", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["total"] >= 126
    assert data["by_app"]["gumroad"] == {"action": 42, "trigger": 9}
    text = CliRunner().invoke(catalog_command, ["--count"]).output
    assert text.splitlines()[-1].startswith(f"total {len(all_records())} (")


@pytest.mark.parametrize(("args", "expected"), [
    (["--app", "snapshots", "--kind", "action"], [f"snapshots.{n}" for n in SNAPSHOTS_OPERATIONS]),
    (["--search", "contacts upsert"], ["highlevel.contacts.upsert"]),
    (["--app", "snapbridge", "--search", "segment"], ["snapbridge.customer.segment_changed"]),
])
def test_cli_lists_what_is_selected(args: list[str], expected: list[str]) -> None:
    result = CliRunner().invoke(catalog_command, args)
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.output.splitlines()] == expected
    listed = json.loads(CliRunner().invoke(catalog_command, [*args, "--json"]).output)
    assert [item["name"] for item in listed] == expected


def test_cli_refuses_an_unknown_kind() -> None:
    result = CliRunner().invoke(catalog_command, ["--kind", "webhook"])
    assert result.exit_code == 2
    assert "action" in result.output and "trigger" in result.output


def test_every_highlevel_record_has_behaviour_in_the_sandbox() -> None:
    for op in highlevel_operations():
        assert callable(handler_for(op)), op.name
    stray = Operation(app="highlevel", name="highlevel.widgets.spin", method="POST", path="/widgets",
                      summary="not served")
    with pytest.raises(LookupError, match=r"highlevel\.widgets\.spin"):
        handler_for(stray)


_ROW = {"area": "contacts", "method": "POST", "path": "/contacts/{contactId}/things", "operationId": "x",
        "scope": "", "summary": "Things", "token_types": "bearer", "version_header": "2021-07-28 v3",
        "deprecated": "", "in_spec": "v3", "scope_source": ""}


@pytest.mark.parametrize(("row", "detail", "message"), [
    (_ROW, {"name": "highlevel.things.add"}, "no scope in the TSV; choose one with `scopes`"),
    ({**_ROW, "scope": "contacts.write"}, {"name": "highlevel.things.add", "scopes": ["x"]},
     "`scopes` may only fill a gap"),
    (_ROW, {"name": "highlevel.things.add", "scopes": ["a"], "colour": 1}, "unknown keys ['colour']"),
    (_ROW, {"name": "highlevel.things.add", "scopes": "contacts.write"}, "`scopes` must be a list of strings"),
    ({**_ROW, "token_types": ""}, {"name": "highlevel.things.add", "scopes": ["a"]}, "no token kind"),
    (_ROW, {"name": "highlevel.things.add", "scopes": ["a"], "body": {"n": "strin"}}, "cannot read type 'strin'"),
    (_ROW, {"name": "things.add", "scopes": ["a"]}, "is not an '<app>.<resource>.<verb>' name"),
])
def test_highlevel_details_are_checked(row: dict[str, str], detail: dict[str, object], message: str) -> None:
    from snapbridge.catalog import highlevel as module

    with pytest.raises(InvalidInput) as caught:
        module._operation(row, detail)
    assert message in str(caught.value)


def test_highlevel_details_read_their_parameter_syntax() -> None:
    from snapbridge.catalog import highlevel as module

    op = module._operation({**_ROW, "scope": "contacts.write"}, {
        "name": "highlevel.things.add", "status": 201, "response": "thing",
        "query": {"mode": "string(a|b)!"}, "body": {"ids": "array<string>!", "cursor": "array", "n": "number"},
    })
    assert op.param("contactId").required  # type: ignore[union-attr]
    assert op.param("mode").enum == ("a", "b") and op.param("mode").required  # type: ignore[union-attr]
    assert op.param("ids").items is not None and op.param("cursor").items is None  # type: ignore[union-attr]
    assert (op.success_status, op.response_key, op.version, op.idempotent) == (201, "thing", "2021-07-28", False)
    assert op.body_schema() == {
        "type": "object", "additionalProperties": False, "required": ["ids"],
        "properties": {"ids": {"type": "array", "items": {"type": "string"}}, "cursor": {"type": "array"},
                       "n": {"type": "number"}},
    }
