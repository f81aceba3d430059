"""The direct path: mappings made of text and expressions over paths, rendered without Jinja.

Most mappings are plain text, one path (`{{ profile.email }}`), text around paths, or filters, tests and simple
operators over paths (`{{ profile.customer_id | default(event.customer.email) }}`, `{{ not event.sale.test }}`).
Those are rendered here by the same lookups, filter calls and Python operators the compiled template makes,
on the same wrapped values. Whenever that does not succeed cleanly, the answer is `GIVE_UP` and Jinja renders
(and words the error), so the two paths never disagree.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, nodes
from jinja2.runtime import Undefined

from snapbridge.workflows.budget import ITERATE_FILTER, RENDER_BUDGET, MappingLimits, RenderBudget
from snapbridge.workflows.values import measure, to_plain, to_text, wrap

__all__ = ["GIVE_UP", "DirectMapping", "direct_mapping"]

# Names Jinja may resolve otherwise than from the scope: `self` is the template, `range` a global, the rest
# mean something inside loops, macros and blocks. A path starting with one of them stays with Jinja.
_JINJA_NAMES = frozenset({"self", "loop", "range", "super", "caller", "varargs", "kwargs"})
GIVE_UP = object()  # what the direct path answers when Jinja must render (and report) instead


class _Part:
    """A part that reads the scope: `raw` as the template reads it, `look_up` refusing a missing result."""

    def raw(self, scope: Mapping[str, object]) -> object:
        raise NotImplementedError

    def look_up(self, scope: Mapping[str, object]) -> object:
        value = self.raw(scope)
        return GIVE_UP if isinstance(value, Undefined) else value


@dataclass(frozen=True)
class _Path(_Part):
    """`event.sale.price_cents`: a scope name and the fields and items read off it, one getter per step."""

    name: str
    steps: tuple[tuple[Callable[[Any, Any], object], str | int], ...]
    undefined: Callable[..., object]

    def raw(self, scope: Mapping[str, object]) -> object:
        """The value as the template reads it, a missing name's or field's Undefined included."""
        if self.name not in scope:
            # Only `range` is global, and a path never starts with it: the template's undefined(name=…).
            return self.undefined(name=self.name)
        value = wrap(scope[self.name], self.name)  # as the Jinja path wraps every name in scope
        for get, key in self.steps:
            value = get(value, key)
        return value


@dataclass(frozen=True)
class _Const:
    """A literal argument of a filter (`cents_to_money('usd')`)."""

    value: object

    def raw(self, scope: Mapping[str, object]) -> object:
        return self.value


@dataclass(frozen=True)
class _Call(_Part):
    """A filter, test or operator over expressions, called as the compiled template calls it: `filter(value,
    *arguments)` with the environment's own (guarded) filter, `test(value)`, and plain Python operators for
    `not`, `==`, `in`… (the sandbox intercepts only arithmetic, which stays with Jinja). So `default` sees a
    missing value's Undefined, and an Undefined operand raises, just as under Jinja."""

    func: Callable[..., object]
    args: tuple[_Expression, ...]  # a filter's or test's value first

    def raw(self, scope: Mapping[str, object]) -> object:
        values = []
        for arg in self.args:
            value = arg.raw(scope)
            if value is GIVE_UP:
                return GIVE_UP
            values.append(value)
        return self.func(*values)


@dataclass(frozen=True)
class _Logic(_Part):
    """`a and b`, `a or b`: Python's own, so the right side is read only when the left does not decide."""

    is_and: bool
    left: _Expression
    right: _Expression

    def raw(self, scope: Mapping[str, object]) -> object:
        left = self.left.raw(scope)
        if left is GIVE_UP or (not left if self.is_and else left):
            return left
        return self.right.raw(scope)


_Expression = _Path | _Const | _Call | _Logic
_COMPARE: dict[str, Callable[[Any, Any], object]] = {
    "eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "gteq": operator.ge, "lt": operator.lt,
    "lteq": operator.le, "in": lambda a, b: a in b, "notin": lambda a, b: a not in b,
}


def _operand(node: nodes.Node, env: Environment) -> _Expression | None:
    return _Const(node.value) if isinstance(node, nodes.Const) else _expression(node, env)


def _expression(node: nodes.Node, env: Environment) -> _Path | _Call | _Logic | None:
    """A path, or filters, tests, `not`, one comparison, `and`, `or` over paths and literals; None otherwise."""
    func: Callable[..., object]
    if isinstance(node, nodes.Test) and node.name == "sameas":
        return None  # identity: Jinja wraps a name once per render, the direct path once per read
    if isinstance(node, nodes.Filter | nodes.Test):
        table: Mapping[str, Any] = env.filters if isinstance(node, nodes.Filter) else env.tests
        named = table.get(node.name)
        if (node.node is None or named is None or node.name == ITERATE_FILTER or node.kwargs
                or node.dyn_args is not None or node.dyn_kwargs is not None):
            return None
        func = named
        operands = [_operand(arg, env) for arg in (node.node, *node.args)]
    elif isinstance(node, nodes.Not):
        func, operands = operator.not_, [_operand(node.node, env)]
    elif isinstance(node, nodes.Compare) and len(node.ops) == 1 and node.ops[0].op in _COMPARE:
        func, operands = _COMPARE[node.ops[0].op], [_operand(node.expr, env), _operand(node.ops[0].expr, env)]
    elif isinstance(node, nodes.And | nodes.Or):
        left, right = _operand(node.left, env), _operand(node.right, env)
        return None if left is None or right is None else _Logic(isinstance(node, nodes.And), left, right)
    else:
        return _path(node, env)
    if any(operand is None for operand in operands):
        return None
    return _Call(func, tuple(operand for operand in operands if operand is not None))


def _foldable(expression: _Expression) -> bool:
    """Whether Jinja may fold it while compiling (its `as_const`), which writes a single expression as text
    (`{{ 0 == 0 }}` gives 'True'): operators over constants, and an `and`/`or` whose constant left side may
    decide it without the right. Those stay with Jinja. Jinja folds only the whole expression of an output, so
    only that is asked."""
    if isinstance(expression, _Const):
        return True
    if isinstance(expression, _Logic):
        return _foldable(expression.left)
    if isinstance(expression, _Call):
        return all(_foldable(arg) for arg in expression.args)
    return False


def _path(node: nodes.Node, env: Environment) -> _Path | None:
    """The path of `name.field[0]['key']…` (constant keys only), read as the compiled template reads it."""
    steps: list[tuple[Callable[[Any, Any], object], str | int]] = []
    while True:
        if isinstance(node, nodes.Getattr) and node.ctx == "load":
            steps.append((env.getattr, node.attr))
            node = node.node
        elif (isinstance(node, nodes.Getitem) and node.ctx == "load" and isinstance(node.arg, nodes.Const)
              and type(node.arg.value) in (str, int)):
            steps.append((env.getitem, node.arg.value))
            node = node.node
        elif isinstance(node, nodes.Name) and node.ctx == "load" and node.name not in _JINJA_NAMES:
            return _Path(node.name, tuple(reversed(steps)), env.undefined)
        else:
            return None


@dataclass(frozen=True)
class DirectMapping:
    """A mapping made only of text and paths, rendered without Jinja.

    `render` gives what the Jinja template gives whenever that succeeds, and `GIVE_UP` in every other case
    (a missing name or field, a value over the limit, a value that cannot be converted), so that Jinja
    renders again and raises its own error. A native mapping is one path; text is parts joined.
    """

    parts: tuple[str | _Path | _Call | _Logic, ...]
    single: _Path | _Call | _Logic | None  # the one expression of a native mapping; None for text
    limits: MappingLimits
    clock: Callable[[], float]
    needs_budget: bool  # it calls filters or operators (filters check the render's budget)

    @property
    def limit(self) -> int:
        return self.limits.max_value_chars

    def render(self, scope: Mapping[str, object]) -> object:
        token = RENDER_BUDGET.set(RenderBudget(self.limits, self.clock)) if self.needs_budget else None
        try:
            return self._render(scope)
        except Exception:
            # Exotic values in scope can make a lookup or conversion raise, and a filter can refuse its input;
            # Jinja decides what that means (and words the error).
            return GIVE_UP
        finally:
            if token is not None:
                RENDER_BUDGET.reset(token)

    def _render(self, scope: Mapping[str, object]) -> object:
        limit = self.limit
        if self.single is not None:
            value = self.single.look_up(scope)
            if value is GIVE_UP or measure(value, limit) > limit:
                return GIVE_UP
            return to_plain(value)
        pieces: list[str] = []
        total = 0
        for part in self.parts:
            if isinstance(part, str):
                text = part
            else:
                value = part.look_up(scope)
                if value is GIVE_UP:
                    return GIVE_UP
                text = to_text(value, limit)
            total += len(text)
            if total > limit:
                return GIVE_UP
            pieces.append(text)
        return "".join(pieces)


def direct_mapping(tree: nodes.Template, native: bool, env: Environment, limits: MappingLimits,
                   clock: Callable[[], float]) -> DirectMapping | None:
    """The direct rendering of a template of text and expressions over paths, or None for anything else."""
    parts: list[str | _Path | _Call | _Logic] = []
    for statement in tree.body:
        if not isinstance(statement, nodes.Output):
            return None
        for node in statement.nodes:
            if isinstance(node, nodes.TemplateData):
                # autoescape is off, so Jinja writes template text unchanged and without finalize.
                parts.append(node.data)
                continue
            found = _expression(node, env)
            if found is None or _foldable(found):
                return None
            parts.append(found)
    needs_budget = any(isinstance(part, _Call | _Logic) for part in parts)
    if not native:
        return DirectMapping(tuple(parts), None, limits, clock, needs_budget)
    if len(parts) != 1 or isinstance(parts[0], str):
        return None
    return DirectMapping(tuple(parts), parts[0], limits, clock, needs_budget)
