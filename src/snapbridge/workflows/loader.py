"""Workflow documents (YAML) → checked Workflow models; every problem is reported with its exact path."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from snapbridge.catalog import Param, ParamType
from snapbridge.errors import InvalidInput
from snapbridge.workflows.events import CustomerProfile, EventSpec, event_spec, field_problem
from snapbridge.workflows.mapping import CompiledMapping, ReferencePath, compile_mapping
from snapbridge.workflows.model import (
    NAME_PATTERN,
    STEP_ID_PATTERN,
    ActionSpec,
    Step,
    TriggerSpec,
    Workflow,
    find_action,
)
from snapbridge.workflows.values import child_path

__all__ = [
    "MAX_DOCUMENT_CHARS",
    "Problem",
    "check_workflow",
    "param_problem",
    "is_template",
    "load_data",
    "load_workflow",
    "parse_document",
]

MAX_DOCUMENT_CHARS = 262_144
_TOP = tuple(Workflow.model_fields)
_TRIGGER = tuple(TriggerSpec.model_fields)
_STEP = tuple(Step.model_fields)
_NAME = re.compile(NAME_PATTERN)
_STEP_ID = re.compile(STEP_ID_PATTERN)
_APPS = ("gumroad", "snapshots")
_TYPE_NAMES = {
    ParamType.STRING: "text", ParamType.INTEGER: "a whole number", ParamType.NUMBER: "a number",
    ParamType.BOOLEAN: "true or false", ParamType.ARRAY: "a list", ParamType.OBJECT: "a mapping",
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a workflow document, at a path such as `steps[1].input.email`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML without anchors or aliases (no 'billion laughs') and without silently repeated keys."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.MarkedYAMLError(None, None, "anchors and aliases are not supported", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.MarkedYAMLError(None, None, f"key {key!r} appears twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_document(text: str) -> object:
    """The YAML document as plain data, or InvalidInput naming the line and column of the mistake."""
    if len(text) > MAX_DOCUMENT_CHARS:
        raise InvalidInput(f"the document is {len(text)} characters long; the limit is {MAX_DOCUMENT_CHARS}")
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise InvalidInput(f"{where}{exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise InvalidInput("the document is not valid YAML") from exc
    except RecursionError:
        raise InvalidInput("the document is nested too deeply") from None


def is_template(text: str) -> bool:
    """Whether a text value holds mapping syntax; plain text is used as it is."""
    return "{{" in text or "{%" in text or "{#" in text


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def _matches(type_: ParamType, value: object) -> bool:
    if type_ is ParamType.STRING:
        return isinstance(value, str)
    if type_ is ParamType.INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if type_ is ParamType.NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if type_ is ParamType.BOOLEAN:
        return isinstance(value, bool)
    if type_ is ParamType.ARRAY:
        return isinstance(value, list)
    return isinstance(value, Mapping)


def param_problem(param: Param, value: object) -> str | None:
    """Why a final (rendered or literal) value does not fit the parameter, or None."""
    if not _matches(param.type, value):
        return f"must be {_TYPE_NAMES[param.type]}, got {_kind(value)}"
    if param.items is not None and isinstance(value, list):
        for index, item in enumerate(value):
            if not _matches(param.items, item):
                return f"item {index} must be {_TYPE_NAMES[param.items]}, got {_kind(item)}"
    if param.enum and value not in param.enum:
        return f"must be one of {', '.join(param.enum)}, got {value!r}"
    return None


class _Checker:
    """Walks one document, collecting problems; templates are compiled and their references checked."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def mapping(
        self, value: object, path: str, known: Sequence[str], what: str
    ) -> Mapping[str, object] | None:
        if not isinstance(value, Mapping):
            self.add(path, f"{what} must be a mapping, got {_kind(value)}")
            return None
        for key in value:
            if key not in known:
                self.add(child_path(path, key) if path else str(key),
                         f"unknown field; known fields: {', '.join(sorted(known))}")
        return value

    def text(self, parent: Mapping[str, object], key: str, path: str, required: bool) -> str | None:
        value = parent.get(key)
        where = child_path(path, key) if path else key
        if value is None:
            if required:
                self.add(where, "is required")
            return None
        if not isinstance(value, str):
            self.add(where, f"must be text, got {_kind(value)}")
            return None
        return value

    def template(self, source: str, path: str) -> CompiledMapping | None:
        try:
            return compile_mapping(source)
        except InvalidInput as exc:
            self.add(path, str(exc))
            return None

    def references(self, compiled: CompiledMapping, path: str, specs: Sequence[EventSpec],
                   earlier: Sequence[str], later: Sequence[str], allow_steps: bool) -> None:
        names = ("event", "profile", "steps") if allow_steps else ("event", "profile")
        for reference in compiled.references:
            problem = _reference_problem(reference, specs, names, earlier, later)
            if problem:
                self.add(path, problem)

    def value(self, value: object, path: str, specs: Sequence[EventSpec], earlier: Sequence[str],
              later: Sequence[str]) -> bool:
        """Check a literal or mapped value; True when it holds a template anywhere."""
        if isinstance(value, str):
            if not is_template(value):
                return False
            compiled = self.template(value, path)
            if compiled is not None:
                self.references(compiled, path, specs, earlier, later, allow_steps=True)
            return True
        if isinstance(value, Mapping):
            found = False
            for key, item in value.items():
                if not isinstance(key, str):
                    self.add(path, f"keys must be text, got {_kind(key)}")
                    continue
                found = self.value(item, child_path(path, key), specs, earlier, later) or found
            return found
        if isinstance(value, list):
            found = False
            for index, item in enumerate(value):
                found = self.value(item, f"{path}[{index}]", specs, earlier, later) or found
            return found
        if value is None or isinstance(value, bool | int | float):
            return False
        self.add(path, f"must be text, a number, true/false, null, a list or a mapping, got {_kind(value)} "
                       "(quote dates and times)")
        return False


def _reference_problem(reference: ReferencePath, specs: Sequence[EventSpec], names: Sequence[str],
                       earlier: Sequence[str], later: Sequence[str]) -> str | None:
    root, rest = str(reference[0]), reference[1:]
    if root not in names:
        return f"unknown name {root!r}; known names: {', '.join(names)}"
    if root == "event":
        # With several trigger events a field must exist in one of them; the first event's complaint is shown.
        problems = [field_problem("event", spec.model, rest) for spec in specs]
        if not problems or None in problems:
            return None
        if len(specs) == 1:
            return problems[0]
        where = "event"
        for key in rest:
            where = child_path(where, key)
        return f"{where} is a field of none of the trigger's events ({', '.join(s.name for s in specs)})"
    if root == "profile":
        return field_problem("profile", CustomerProfile, rest)
    if not rest:
        return "name the step: steps.<id>.output"
    step = rest[0]
    if step not in earlier:
        if step in later:
            return f"steps.{step} does not run before this step; only earlier steps' outputs can be used"
        known = ", ".join(str(s) for s in earlier) or "none"
        return f"unknown step {step!r}; earlier steps: {known}"
    if len(rest) > 1 and rest[1] != "output":
        return f"steps.{step}.{rest[1]} is not known; a step offers only its output (steps.{step}.output)"
    return None


def _event_names(checker: _Checker, trigger: Mapping[str, object]) -> list[tuple[str, str]]:
    """(path, name) of each event the trigger names; problems for anything else."""
    value = trigger.get("event")
    if value is None:
        checker.add("trigger.event", "is required")
        return []
    if isinstance(value, str):
        return [("trigger.event", value)]
    if not isinstance(value, list) or not value:
        checker.add("trigger.event", f"must be an event type or a non-empty list of them, got {_kind(value)}")
        return []
    names: list[tuple[str, str]] = []
    for index, item in enumerate(value):
        if not isinstance(item, str):
            checker.add(f"trigger.event[{index}]", f"must be text, got {_kind(item)}")
        elif item in [n for _, n in names]:
            checker.add(f"trigger.event[{index}]", f"{item!r} is listed twice")
        else:
            names.append((f"trigger.event[{index}]", item))
    return names


def _check_trigger(checker: _Checker, data: Mapping[str, object]) -> tuple[EventSpec, ...]:
    if "trigger" not in data:
        checker.add("trigger", "is required")
        return ()
    trigger = checker.mapping(data["trigger"], "trigger", _TRIGGER, "the trigger")
    if trigger is None:
        return ()
    app = checker.text(trigger, "app", "trigger", required=True)
    names = _event_names(checker, trigger)
    specs: list[EventSpec] = []
    if app is not None and app not in _APPS:
        checker.add("trigger.app", f"unknown app {app!r}; known apps: {', '.join(_APPS)}")
    elif app is not None:
        for path, name in names:
            try:
                specs.append(event_spec(app, name))
            except InvalidInput as exc:
                checker.add(path, str(exc))
    source = checker.text(trigger, "filter", "trigger", required=False)
    if source is not None:
        compiled = checker.template(source, "trigger.filter")
        if compiled is not None:
            checker.references(compiled, "trigger.filter", specs, (), (), allow_steps=False)
    return tuple(specs)


def _check_input(checker: _Checker, raw: object, path: str, action: ActionSpec | None,
                 specs: Sequence[EventSpec], earlier: Sequence[str], later: Sequence[str]) -> None:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        checker.add(path, f"the input must be a mapping of parameter names to values, got {_kind(raw)}")
        return
    for name, value in raw.items():
        where = child_path(path, name)
        param = action.param(name) if action else None
        if action is not None and param is None:
            known = ", ".join(p.name for p in action.params) or "none"
            checker.add(where, f"unknown parameter of {action.name}; known parameters: {known}")
        mapped = checker.value(value, where, specs, earlier, later)
        plain = isinstance(value, str | bool | int | float | list | Mapping)
        if param is not None and not mapped and plain:
            problem = param_problem(param, value)
            if problem:
                checker.add(where, problem)
    if action is not None:
        for param in action.params:
            if param.required and raw.get(param.name) is None:
                checker.add(path, f"missing required parameter {param.name} ({_TYPE_NAMES[param.type]})")


def _check_steps(checker: _Checker, data: Mapping[str, object], specs: Sequence[EventSpec]) -> None:
    steps = data.get("steps")
    if steps is None:
        checker.add("steps", "is required")
        return
    if not isinstance(steps, list) or not steps:
        checker.add("steps", f"must be a non-empty list of steps, got {_kind(steps)}")
        return
    ids = [s.get("id") if isinstance(s, Mapping) else None for s in steps]
    for index, raw in enumerate(steps):
        path = f"steps[{index}]"
        step = checker.mapping(raw, path, _STEP, "a step")
        if step is None:
            continue
        step_id = checker.text(step, "id", path, required=True)
        if step_id is not None:
            if not _STEP_ID.fullmatch(step_id):
                checker.add(f"{path}.id", "must be 1-63 lower-case letters, digits or '_', starting with a "
                            "letter")
            elif step_id in ids[:index]:
                checker.add(f"{path}.id", f"{step_id!r} is already the id of steps[{ids.index(step_id)}]")
        action: ActionSpec | None = None
        name = checker.text(step, "action", path, required=True)
        if name is not None:
            try:
                action = find_action(name)
            except InvalidInput as exc:
                checker.add(f"{path}.action", str(exc))
        earlier = [str(i) for i in ids[:index] if isinstance(i, str)]
        later = [str(i) for i in ids[index:] if isinstance(i, str)]
        _check_input(checker, step.get("input"), f"{path}.input", action, specs, earlier, later)
        condition = checker.text(step, "condition", path, required=False)
        if condition is not None:
            compiled = checker.template(condition, f"{path}.condition")
            if compiled is not None:
                checker.references(compiled, f"{path}.condition", specs, earlier, later, allow_steps=True)


def _check_top(checker: _Checker, data: Mapping[str, object]) -> None:
    if "version" in data and data["version"] != 1:
        checker.add("version", f"only version 1 is known, got {data['version']!r}")
    name = checker.text(data, "name", "", required=True)
    if name is not None and not _NAME.fullmatch(name):
        checker.add("name", "must be 1-63 lower-case letters, digits or '-', starting with a letter or digit")
    checker.text(data, "description", "", required=False)
    if "enabled" in data and not isinstance(data["enabled"], bool):
        checker.add("enabled", f"must be true or false, got {_kind(data['enabled'])}")


def _pydantic_problems(exc: ValidationError) -> list[Problem]:
    found = []
    for error in exc.errors():
        path = ""
        for part in error["loc"]:
            path = f"{path}[{part}]" if isinstance(part, int) else child_path(path, part) if path else str(part)
        found.append(Problem(path, error["msg"]))
    return found


def check_workflow(data: object) -> tuple[Workflow | None, tuple[Problem, ...]]:
    """The workflow and no problems, or None and every problem found, in document order."""
    checker = _Checker()
    top = checker.mapping(data, "", _TOP, "a workflow")
    if top is None:
        return None, tuple(checker.problems)
    _check_top(checker, top)
    specs = _check_trigger(checker, top)
    _check_steps(checker, top, specs)
    if checker.problems:
        return None, tuple(checker.problems)
    try:
        return Workflow.model_validate(top), ()
    except ValidationError as exc:
        return None, tuple(_pydantic_problems(exc))


def load_workflow(text: str, source: str = "workflow") -> Workflow:
    """Parse and check a workflow document; InvalidInput lists every problem, one per line."""
    try:
        data = parse_document(text)
    except InvalidInput as exc:
        raise InvalidInput(f"{source} is not a valid workflow:\n  {exc}") from None
    return load_data(data, source)


def load_data(data: object, source: str = "workflow") -> Workflow:
    """Check already parsed data (a JSON body, say) as a workflow; InvalidInput lists every problem."""
    workflow, problems = check_workflow(data)
    if workflow is None:
        lines = "\n".join(f"  {problem}" for problem in problems)
        raise InvalidInput(f"{source} is not a valid workflow:\n{lines}")
    return workflow

