"""The workflow model: a trigger, ordered steps of catalog actions with input mappings, and local actions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from snapbridge.catalog import Operation, Param, ParamIn, ParamType, get_action
from snapbridge.errors import InvalidInput

__all__ = [
    "LOCAL_ACTIONS",
    "NAME_PATTERN",
    "STEP_ID_PATTERN",
    "ActionSpec",
    "Step",
    "TriggerSpec",
    "Workflow",
    "find_action",
]

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
STEP_ID_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"


class TriggerSpec(BaseModel):
    """What starts a workflow: an event of an app, optionally narrowed by a filter expression."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    app: Literal["gumroad", "snapshots"]
    event: str | tuple[str, ...] = Field(
        description="an event type of the app (purchase, location.updated…) or a list of them; with a list, "
        "each field a mapping reads must exist in at least one of the events",
    )
    filter: str | None = Field(
        default=None, description="a mapping expression that must render true or false, e.g. "
        "\"{{ not event.sale.test }}\"; the workflow runs only when it is true",
    )

    @property
    def events(self) -> tuple[str, ...]:
        return (self.event,) if isinstance(self.event, str) else self.event


class Step(BaseModel):
    """One action of a workflow, its input mapping and an optional condition."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=STEP_ID_PATTERN, description="unique within the workflow; later steps read "
                    "this step's result as steps.<id>.output")
    action: str = Field(description="a catalog action name, e.g. snapshots.locations.create")
    input: dict[str, JsonValue] = Field(
        default_factory=dict, description="parameter name → value; text may hold mapping expressions "
        "({{ … }}) over event, profile and steps.<earlier id>.output",
    )
    condition: str | None = Field(
        default=None, description="a mapping expression; the step runs only when it renders true",
    )


class Workflow(BaseModel):
    """A named workflow: when its trigger fires and the filter holds, its steps run in order."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="snapbridge workflow")

    version: Literal[1] = 1
    name: str = Field(pattern=NAME_PATTERN, description="unique name: lower-case letters, digits and '-'")
    description: str = ""
    enabled: bool = True
    trigger: TriggerSpec
    steps: tuple[Step, ...] = Field(min_length=1)

    def step(self, step_id: str) -> Step | None:
        return next((s for s in self.steps if s.id == step_id), None)


@dataclass(frozen=True)
class ActionSpec:
    """What a workflow needs to know of an action: its parameters and, for HTTP actions, the catalog record.

    Local actions (app `snapbridge`) change what snapbridge itself keeps, such as the customer profile; the
    pipeline runs them without a request.
    """

    name: str
    app: str
    summary: str
    params: tuple[Param, ...]
    operation: Operation | None = None

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


def _body(name: str, type_: ParamType = ParamType.STRING, required: bool = False, description: str = "",
          items: ParamType | None = None) -> Param:
    return Param(name, ParamIn.BODY, type_, required, description, (), items)


_STRINGS = ParamType.STRING
LOCAL_ACTIONS: Mapping[str, ActionSpec] = {
    spec.name: spec for spec in (
        ActionSpec(
            name="snapbridge.profiles.update", app="snapbridge",
            summary="Update the customer profile snapbridge keeps (Gumroad has no customer write endpoint)",
            params=(
                _body("email", required=True, description="the customer whose profile changes"),
                _body("name"), _body("plan"), _body("customer_id", description="id in the Snapshots API"),
                _body("location_id"), _body("location_name"), _body("timezone", description="IANA name"),
                _body("tier"), _body("last_activity_at", description="ISO 8601"),
                _body("tags", ParamType.ARRAY, description="replaces the tags", items=_STRINGS),
                _body("add_tags", ParamType.ARRAY, description="added to the tags", items=_STRINGS),
            ),
        ),
        ActionSpec(
            name="snapbridge.segments.refresh", app="snapbridge",
            summary="Evaluate the customer's segments again; a change emits customer.segment_changed",
            params=(_body("email", required=True),),
        ),
    )
}

def find_action(name: str) -> ActionSpec:
    """The local action or catalog action of that name, or InvalidInput naming the close or known ones."""
    local = LOCAL_ACTIONS.get(name)
    if local is not None:
        return local
    if name.startswith("snapbridge."):
        known = ", ".join(sorted(LOCAL_ACTIONS))
        raise InvalidInput(f"unknown action {name!r}; known snapbridge actions: {known}")
    operation = get_action(name)
    return ActionSpec(operation.name, operation.app, operation.summary, operation.params, operation)
