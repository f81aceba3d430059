"""The mapping language: sandboxed Jinja2 templates that render a step's input, bounded in size, work, time.

A value that is one expression, `{{ event.sale.price_cents }}`, renders to its native type (here an int);
anything else renders to text, where null reads as "", booleans as true/false and objects/lists as JSON.
Missing fields fail with the path that was asked for. Only fields of objects, items of lists, the `loop`
counters, range() and the filters of `filters.FILTERS` are reachable: no methods, no attributes of Python
objects, no imports, no macros. Every value, loop, number and render is bounded by `MappingLimits`.

Most mappings are text, paths, and filters, tests and simple operators over paths: `direct` renders those
without Jinja, and the Jinja template renders whenever that does not succeed cleanly, so every error message
comes from one place.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from jinja2 import Template, TemplateError, TemplateSyntaxError, UndefinedError, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.nativetypes import NativeCodeGenerator
from jinja2.runtime import Context, LoopContext, Undefined
from jinja2.sandbox import SandboxedEnvironment
from jinja2.tests import TESTS

from snapbridge.errors import InvalidInput
from snapbridge.workflows.budget import ITERATE_FILTER, RENDER_BUDGET, MappingLimits, RenderBudget, current_budget
from snapbridge.workflows.direct import GIVE_UP, DirectMapping, direct_mapping
from snapbridge.workflows.filters import FILTERS
from snapbridge.workflows.values import (
    SCOPE_NAMES,
    Missing,
    Record,
    RecordList,
    describe,
    measure,
    to_plain,
    to_text,
    wrap,
)

__all__ = [
    "CompiledMapping",
    "MappingEngine",
    "MappingLimits",
    "ReferencePath",
    "compile_mapping",
    "default_engine",
]

ReferencePath = tuple[str | int, ...]

_LOOP_FIELDS = frozenset(
    {"index", "index0", "revindex", "revindex0", "first", "last", "length", "depth", "depth0", "previtem",
     "nextitem"}
)
_ALLOWED_NODES = (
    nodes.Template, nodes.Output, nodes.TemplateData, nodes.For, nodes.If, nodes.Assign, nodes.With,
    nodes.Name, nodes.Const, nodes.Tuple, nodes.List, nodes.Dict, nodes.Pair, nodes.Keyword, nodes.CondExpr,
    nodes.BinExpr, nodes.UnaryExpr, nodes.Compare, nodes.Operand, nodes.Concat, nodes.Getattr, nodes.Getitem,
    nodes.Slice, nodes.Filter, nodes.Test, nodes.Call,
)
_STATEMENT_NAMES: Mapping[type[nodes.Node], str] = {
    nodes.Macro: "macro", nodes.CallBlock: "call", nodes.Import: "import",
    nodes.FromImport: "from … import", nodes.Include: "include", nodes.Extends: "extends",
    nodes.Block: "block", nodes.AssignBlock: "set … endset", nodes.FilterBlock: "filter",
    nodes.ScopedEvalContextModifier: "autoescape", nodes.EvalContextModifier: "autoescape",
    nodes.ExprStmt: "do",
}


# Set only by `_jinja_only`: every render goes through Jinja, the reference the direct path is checked against.
_JINJA_ONLY: ContextVar[bool] = ContextVar("snapbridge_mapping_jinja_only", default=False)


@contextmanager
def _jinja_only() -> Iterator[None]:
    """Within this block, render every mapping through Jinja (for equivalence tests and the benchmark)."""
    token = _JINJA_ONLY.set(True)
    try:
        yield
    finally:
        _JINJA_ONLY.reset(token)





def _fail_if_missing(*values: object) -> None:
    for value in values:
        if isinstance(value, Undefined):
            value._fail_with_undefined_error()


def _is_number(value: object) -> bool:
    return isinstance(value, int | float)


def _binop(operator: str, left: object, right: object, limits: MappingLimits) -> object:
    limit = limits.max_value_chars
    if _is_number(left) and _is_number(right):
        return _arithmetic(operator, left, right, limits)  # type: ignore[arg-type]
    if operator == "+":
        if isinstance(left, str) and isinstance(right, str):
            if len(left) + len(right) > limit:
                raise InvalidInput(f"joined text would be longer than the limit of {limit} characters")
            return left + right
        if isinstance(left, list | tuple | RecordList) and isinstance(right, list | tuple | RecordList):
            if measure(left, limit) + measure(right, limit) > limit:
                raise InvalidInput(f"joined list would be larger than the limit of {limit} characters")
            return [*left, *right]
    if operator == "*":
        repeated, count = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(count, int) and isinstance(repeated, str | list | tuple | RecordList):
            if count <= 0:
                return "" if isinstance(repeated, str) else []
            if measure(repeated, limit) * count > limit or len(repeated) * count > limit:
                raise InvalidInput(
                    f"repeating {describe(repeated)} {count} times exceeds the limit of {limit} characters"
                )
            return repeated * count if isinstance(repeated, str) else list(repeated) * count
    if operator == "%" and isinstance(left, str):
        raise InvalidInput("'%' works on numbers only; join text with '~'")
    raise InvalidInput(f"cannot apply '{operator}' to {describe(left)} and {describe(right)}")


def _arithmetic(operator: str, left: float, right: float, limits: MappingLimits) -> object:
    bits = limits.max_int_bits
    both_int = isinstance(left, int) and isinstance(right, int)
    if both_int and operator == "*" and int(left).bit_length() + int(right).bit_length() > bits + 1:
        raise InvalidInput(f"the product would have more than {bits} bits")
    # |left| ** right has at least (bit_length - 1) * right + 1 bits; refuse before computing when that is too
    # many. Powers that pass cost at most twice the limit, and the result is checked below.
    if both_int and operator == "**" and right > 1 and abs(left) > 1 \
            and (int(left).bit_length() - 1) * int(right) + 1 > bits:
        raise InvalidInput(f"the power would have more than {bits} bits")
    try:
        if operator == "+":
            result: object = left + right
        elif operator == "-":
            result = left - right
        elif operator == "*":
            result = left * right
        elif operator == "/":
            result = left / right
        elif operator == "//":
            result = left // right
        elif operator == "%":
            result = left % right
        else:
            result = left**right
    except ZeroDivisionError as exc:
        raise InvalidInput("division by zero") from exc
    except OverflowError as exc:
        raise InvalidInput(f"the result of '{operator}' is too large") from exc
    if isinstance(result, int) and result.bit_length() > bits:
        raise InvalidInput(f"the result of '{operator}' has more than {bits} bits")
    if isinstance(result, complex):
        raise InvalidInput(f"the result of '{operator}' is not a real number")
    return result


def _guarded(name: str, func: Callable[..., object], limits: MappingLimits) -> Callable[..., object]:
    """A filter that checks its inputs and output against the limits and reports failures by name."""
    limit = limits.max_value_chars

    def guarded(*args: object, **kwargs: object) -> object:
        current_budget().check_time()
        values = [*args, *kwargs.values()]
        # Only `default` may look at a missing value; every other use names the missing path.
        _fail_if_missing(*(values[1:] if name == "default" else values))
        for value in values:
            if measure(value, limit) > limit:
                raise InvalidInput(f"{name}: input is larger than the limit of {limit} characters")
        try:
            result = func(*args, **kwargs)
        except InvalidInput:
            raise
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise InvalidInput(f"filter {name} failed") from exc
        if measure(result, limit) > limit:
            raise InvalidInput(f"{name}: result is larger than the limit of {limit} characters")
        return result

    guarded.__name__ = name
    guarded.__doc__ = func.__doc__
    return guarded


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator, with `~` routed through a join that checks sizes before it builds text."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _NativeCodeGenerator(_CodeGenerator, NativeCodeGenerator):
    """The same, yielding raw values so a single expression keeps its type."""


class _Environment(SandboxedEnvironment):
    """The sandbox: every attribute, item, call, operator and loop of a mapping goes through these methods."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def __init__(self, limits: MappingLimits, *, native: bool) -> None:
        # optimized=False: jinja's optimizer would evaluate constant parts at compile time, outside a budget.
        super().__init__(
            undefined=Missing, autoescape=False, optimized=False, cache_size=0, auto_reload=False
        )
        self.limits = limits
        self.code_generator_class = _NativeCodeGenerator if native else _CodeGenerator
        if not native:
            self.finalize = self._finalize
        self.concat = self._join  # type: ignore[method-assign]
        self.globals.clear()
        self.globals["range"] = self._range
        self.filters = {name: _guarded(name, func, limits) for name, func in FILTERS.items()}
        self.filters[ITERATE_FILTER] = self._iterate
        self.tests = dict(TESTS)

    def _finalize(self, value: object) -> str:
        return to_text(value, self.limits.max_value_chars)

    def _join(self, parts: Iterable[object]) -> str:
        return self.bounded_concat(tuple(parts))

    def bounded_concat(self, parts: Sequence[object]) -> str:
        current_budget().check_time()
        limit = self.limits.max_value_chars
        pieces: list[str] = []
        total = 0
        for part in parts:
            piece = to_text(part, limit)
            total += len(piece)
            if total > limit:
                raise InvalidInput(f"joined text would be longer than the limit of {limit} characters")
            pieces.append(piece)
        return "".join(pieces)

    def _range(self, *args: object) -> range:
        bounds = [a for a in args if isinstance(a, int) and not isinstance(a, bool)]
        if not bounds or len(bounds) > 3 or len(bounds) != len(args):
            raise InvalidInput("range() takes one to three whole numbers")
        try:
            numbers = range(*bounds)
        except ValueError as exc:
            raise InvalidInput("range() step must not be zero") from exc
        if len(numbers) > self.limits.max_range:
            raise InvalidInput(
                f"range() of {len(numbers)} numbers is over the limit of {self.limits.max_range}"
            )
        return numbers

    def _iterate(self, value: object) -> Iterator[object]:
        run = current_budget()
        _fail_if_missing(value)
        if not isinstance(value, str | Mapping | Sequence | range | Iterator):
            raise InvalidInput(f"cannot loop over {describe(value)}")

        def counted() -> Iterator[object]:
            for item in value:
                run.tick()
                yield item

        return counted()

    def getattr(self, obj: Any, attribute: str) -> Any:
        if attribute.startswith("_"):
            raise InvalidInput(f"access to internal attribute {attribute!r} is not allowed")
        if type(obj) is Record:  # the usual case, before the ABC checks below
            return obj.lookup(attribute)
        if isinstance(obj, Undefined):
            return obj  # the first missing path is the one worth reporting
        if isinstance(obj, Record):
            return obj.lookup(attribute)
        if isinstance(obj, Mapping):
            if attribute in obj:
                return obj[attribute]
            return Missing(hint=f"the object has no key {attribute!r}")
        if isinstance(obj, LoopContext) and attribute in _LOOP_FIELDS:
            return getattr(obj, attribute)
        return Missing(hint=f"{describe(obj)} has no field {attribute!r}")

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(argument, str) and argument.startswith("_"):
            raise InvalidInput(f"access to internal attribute {argument!r} is not allowed")
        if isinstance(obj, Undefined):
            return obj
        if isinstance(obj, Record):
            return obj.lookup(argument)
        if isinstance(obj, Mapping):
            try:
                return obj[argument]
            except (KeyError, TypeError):
                return Missing(hint=f"the object has no key {argument!r}")
        if isinstance(obj, str | Sequence | range) and isinstance(argument, int | slice):
            where = obj.path if isinstance(obj, RecordList) else describe(obj)
            try:
                return obj[argument]
            except IndexError:
                return Missing(hint=f"{where} has no item {argument} (it has {len(obj)})")
        return Missing(hint=f"{describe(obj)} has no item {argument!r}")

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if __obj != __self._range:
            raise InvalidInput("only range() can be called in a mapping")
        # Jinja hands the loop and block variables to every call; range() needs neither.
        kwargs.pop("_loop_vars", None)
        kwargs.pop("_block_vars", None)
        if kwargs:
            raise InvalidInput("range() takes no keyword arguments")
        return __self._range(*args)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        current_budget().check_time()
        _fail_if_missing(left, right)
        return _binop(operator, left, right, self.limits)


def _statement_name(node: nodes.Node) -> str:
    return _STATEMENT_NAMES.get(type(node), type(node).__name__.lower())


def _check_tree(tree: nodes.Template, env: _Environment, multiline: bool) -> list[str]:
    """Every reason the template is refused, in source order."""
    problems: list[str] = []
    limit = env.limits.max_nesting
    user_filters = sorted(name for name in env.filters if not name.startswith("_"))

    def visit(node: nodes.Node, depth: int) -> None:
        if depth > limit:
            problems.append(f"expressions are nested deeper than {limit} levels")
            return
        line = f"line {node.lineno}: " if multiline and getattr(node, "lineno", None) else ""
        if not isinstance(node, _ALLOWED_NODES):
            problems.append(f"{line}'{{% {_statement_name(node)} %}}' is not allowed in a mapping")
            return
        if isinstance(node, nodes.Getattr | nodes.Getitem):
            # The object first, so `a.__class__.__mro__` names `__class__`, the first offence, first.
            visit(node.node, depth + 1)
        if isinstance(node, nodes.For) and node.recursive:
            problems.append(f"{line}recursive loops are not allowed in a mapping")
        elif isinstance(node, nodes.Name) and node.name.startswith("_"):
            problems.append(f"{line}access to internal name {node.name!r} is not allowed")
        elif isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            problems.append(f"{line}access to internal attribute {node.attr!r} is not allowed")
        elif (isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const)
              and isinstance(node.arg.value, str) and node.arg.value.startswith("_")):
            problems.append(f"{line}access to internal attribute {node.arg.value!r} is not allowed")
        elif isinstance(node, nodes.Filter) and node.name not in user_filters:
            problems.append(f"{line}unknown filter {node.name!r}; known filters: {', '.join(user_filters)}")
        elif isinstance(node, nodes.Test) and node.name not in env.tests:
            problems.append(f"{line}unknown test {node.name!r}; known tests: {', '.join(sorted(env.tests))}")
        elif isinstance(node, nodes.Call) and not (
            isinstance(node.node, nodes.Name) and node.node.name == "range"
        ):
            problems.append(f"{line}only range() can be called in a mapping")
        if isinstance(node, nodes.Filter | nodes.Test | nodes.Call) and (node.dyn_args or node.dyn_kwargs):
            problems.append(f"{line}arguments cannot be unpacked with * or ** in a mapping")
        for child in node.iter_child_nodes():
            if not (isinstance(node, nodes.Getattr | nodes.Getitem) and child is node.node):
                visit(child, depth + 1)

    visit(tree, 0)
    return list(dict.fromkeys(problems))


def _chain(node: nodes.Node) -> ReferencePath | None:
    if isinstance(node, nodes.Name) and node.ctx == "load":
        return (node.name,)
    if isinstance(node, nodes.Getattr):
        head = _chain(node.node)
        return None if head is None else (*head, node.attr)
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        head = _chain(node.node)
        key = node.arg.value
        return None if head is None or not isinstance(key, str | int) else (*head, key)
    return None


def _references(tree: nodes.Template) -> tuple[ReferencePath, ...]:
    """The data paths a template reads (`('event', 'sale', 'email')`), minus names it binds itself."""
    bound = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")} | {"loop", "range"}
    found: list[ReferencePath] = []

    def visit(node: nodes.Node) -> None:
        path = _chain(node) if isinstance(node, nodes.Name | nodes.Getattr | nodes.Getitem) else None
        if path is not None:
            if path[0] not in bound and path not in found:
                found.append(path)
            return
        for child in node.iter_child_nodes():
            visit(child)

    visit(tree)
    return tuple(found)


def _is_single_expression(tree: nodes.Template) -> bool:
    body = tree.body
    return (len(body) == 1 and isinstance(body[0], nodes.Output) and len(body[0].nodes) == 1
            and not isinstance(body[0].nodes[0], nodes.TemplateData))


@dataclass(frozen=True)
class CompiledMapping:
    """One checked, compiled mapping value; render it as often as needed."""

    source: str
    native: bool
    references: tuple[ReferencePath, ...]
    _template: Template = field(repr=False, compare=False)
    _limits: MappingLimits = field(repr=False, compare=False)
    _clock: Callable[[], float] = field(repr=False, compare=False)
    _direct: DirectMapping | None = field(default=None, repr=False, compare=False)

    @property
    def direct(self) -> bool:
        """Whether renders skip Jinja (text, paths, and filters, tests and operators over paths only)."""
        return self._direct is not None

    def render(self, scope: Mapping[str, object]) -> object:
        """The value for this scope (`event`, `profile`, `steps`…): native for one expression, else text."""
        if self._direct is not None and not _JINJA_ONLY.get():
            value = self._direct.render(scope)
            if value is not GIVE_UP:
                return value
        return self._render_jinja(scope)

    def _render_jinja(self, scope: Mapping[str, object]) -> object:
        run = RenderBudget(self._limits, self._clock)
        run_token = RENDER_BUDGET.set(run)
        names_token = SCOPE_NAMES.set(tuple(sorted(scope)))
        try:
            variables = {name: wrap(value, name) for name, value in scope.items()}
            chunks = self._template.root_render_func(self._template.new_context(variables))
            return self._collect(chunks)
        except InvalidInput:
            raise
        except (UndefinedError, SecurityError) as exc:
            # Jinja's message names the path already; chaining it would only print it twice.
            raise InvalidInput(exc.message or str(exc)) from None
        except TemplateError as exc:
            raise InvalidInput("cannot render the mapping") from exc
        except RecursionError:
            raise InvalidInput("the mapping recursed too deeply") from None
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise InvalidInput("cannot render the mapping") from exc
        finally:
            SCOPE_NAMES.reset(names_token)
            RENDER_BUDGET.reset(run_token)

    def _collect(self, chunks: Iterator[object]) -> object:
        limit = self._limits.max_value_chars
        if self.native:
            values = list(chunks)
            value = values[0] if len(values) == 1 else "".join(to_text(v, limit) for v in values)
            _fail_if_missing(value)
            if measure(value, limit) > limit:
                raise InvalidInput(f"the value is larger than the limit of {limit} characters")
            return to_plain(value)
        pieces: list[str] = []
        total = 0
        for chunk in chunks:
            text = str(chunk)
            total += len(text)
            if total > limit:
                raise InvalidInput(f"the text is longer than the limit of {limit} characters")
            pieces.append(text)
        return "".join(pieces)


class MappingEngine:
    """Compiles mapping sources once (cached by source text) and renders them within `limits`."""

    def __init__(
        self, limits: MappingLimits | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits or MappingLimits()
        self._clock = clock
        self._text_env = _Environment(self.limits, native=False)
        self._native_env = _Environment(self.limits, native=True)
        self._cache: OrderedDict[str, CompiledMapping] = OrderedDict()
        self._lock = threading.Lock()

    def compile(self, source: str) -> CompiledMapping:
        """The compiled mapping, or InvalidInput listing every reason it is refused."""
        with self._lock:
            hit = self._cache.get(source)
            if hit is not None:
                self._cache.move_to_end(source)
                return hit
        compiled = self._compile(source)
        with self._lock:
            self._cache[source] = compiled
            while len(self._cache) > self.limits.cache_size:
                self._cache.popitem(last=False)
        return compiled

    def render(self, source: str, scope: Mapping[str, object]) -> object:
        return self.compile(source).render(scope)

    def _compile(self, source: str) -> CompiledMapping:
        if not isinstance(source, str):
            raise InvalidInput(f"a mapping must be text, got {describe(source)}")
        if len(source) > self.limits.max_source_chars:
            raise InvalidInput(
                f"the mapping is {len(source)} characters long; the limit is {self.limits.max_source_chars}"
            )
        try:
            tree = self._text_env.parse(source)
        except TemplateSyntaxError as exc:
            raise InvalidInput(f"syntax error in line {exc.lineno}: {exc.message}") from None
        except RecursionError:
            raise InvalidInput("the mapping is nested too deeply") from None
        problems = _check_tree(tree, self._text_env, multiline="\n" in source.strip())
        if problems:
            raise InvalidInput("; ".join(problems))
        native = _is_single_expression(tree)
        references = _references(tree)
        direct = direct_mapping(tree, native, self._native_env if native else self._text_env, self.limits, self._clock)
        for loop in list(tree.find_all(nodes.For)):
            # Every loop draws from the render's iteration budget, whatever it iterates over.
            loop.iter = nodes.Filter(loop.iter, ITERATE_FILTER, [], [], None, None, lineno=loop.lineno)
        env = self._native_env if native else self._text_env
        try:
            code = env.compile(tree)
        except (TemplateError, RecursionError, SyntaxError, ValueError, MemoryError) as exc:
            raise InvalidInput("cannot compile the mapping") from exc
        template = env.template_class.from_code(env, code, env.make_globals(None), None)
        return CompiledMapping(source, native, references, template, self.limits, self._clock, direct)


@cache
def default_engine() -> MappingEngine:
    """The shared engine with default limits, built on first use."""
    return MappingEngine()


def compile_mapping(source: str) -> CompiledMapping:
    """Compile with the default engine (cached)."""
    return default_engine().compile(source)
