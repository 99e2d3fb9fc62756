"""Template -> channel payload, rendered in a Jinja2 sandbox.

Marketers write templates, so they are untrusted code: they render in an immutable sandbox over
plain dicts (never model instances), with undefined names an error and the output size capped.
Placeholders are checked against `MEMBER_PLACEHOLDERS` (and the channel's
`MESSAGE_PLACEHOLDERS`) when a template is saved, and so are the tags and filters it uses.

Beyond Jinja's sandbox (which guards attribute access, not resources), each render runs on a
budget of operations, characters and time (`_Budget`): the parsed template is rewritten so that
its loops, joins and outputs are counted, operators that build values (`*`, `**`, `+`, `%`) and
calls are checked before they run, and the filters and string methods are allow-listed. A render
over budget raises TemplateLimitExceeded, which fails that member's message, not the batch.
"""

from __future__ import annotations

import functools
import math
import re
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.core.exceptions import ValidationError
from jinja2 import (
    StrictUndefined,
    TemplateError,
    TemplateSyntaxError,
    nodes,
    pass_context,
    pass_eval_context,
)
from jinja2.environment import Template
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS as DEFAULT_FILTERS
from jinja2.runtime import LoopContext, Macro, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

MEMBER_PLACEHOLDERS = frozenset(
    {"first_name", "last_name", "full_name", "email", "phone", "external_id", "language"}
)
# Top-level names a channel's templates may use besides `member`, filled per message by the
# dispatcher. Only email carries an unsubscribe link (RFC 8058 List-Unsubscribe goes with it).
MESSAGE_PLACEHOLDERS: dict[str, frozenset[str]] = {"email": frozenset({"unsubscribe_url"})}
# Member columns a renderer needs, as `Message.objects.values()` paths.
MEMBER_VALUE_PATHS = {
    "first_name": "member__first_name",
    "last_name": "member__last_name",
    "email": "member__email",
    "phone": "member__phone",
    "external_id": "member__external_id",
    "language": "member__language",
}
MAX_OUTPUT_CHARS = 200_000
# What one member's render may spend (subject, body and HTML together): operations (calls,
# operators, filters, loop turns), characters produced anywhere (buffers of {% set %} blocks
# and macros included) and wall-clock time. A template's own text is not the limit: a short
# one can loop or double a string into gigabytes, and the output check alone would come too
# late. Generous for real templates (a long HTML email spends a few hundred operations).
MAX_RENDER_OPERATIONS = 100_000
MAX_RENDER_CHARS = 4 * MAX_OUTPUT_CHARS
MAX_RENDER_SECONDS = 0.5
# Items a list or tuple made in a template may have (repetition, concatenation).
MAX_SEQUENCE_ITEMS = 1_000
# The filters a template may use: those whose output is at most a few times their input.
# Left out, among others: attr (reaches attributes by computed name), format and center/
# indent/wordwrap (sizes chosen by the template), join/list/map/sum/batch/slice (iteration
# the budget does not see), pprint/tojson/xmlattr (dump objects).
SAFE_FILTERS = frozenset({
    "abs", "capitalize", "count", "d", "default", "e", "escape", "first", "float", "int",
    "last", "length", "lower", "replace", "reverse", "round", "safe", "string", "striptags",
    "title", "trim", "truncate", "upper", "urlencode", "wordcount",
})
# String methods a template may call: none of them makes a string longer than its input.
SAFE_STR_METHODS = frozenset({
    "upper", "lower", "title", "capitalize", "casefold", "swapcase", "strip", "lstrip",
    "rstrip", "startswith", "endswith", "removeprefix", "removesuffix", "isdigit", "isalpha",
    "isalnum", "isspace", "islower", "isupper", "istitle", "count", "find", "rfind", "split",
    "rsplit", "splitlines", "partition", "rpartition",
})
# Template tags that load other templates or define callables: refused when a template is
# saved (there are no other templates to load, and a macro is the way to recursion).
REFUSED_TAGS: dict[type[nodes.Node], str] = {
    nodes.Extends: "{% extends %}", nodes.Include: "{% include %}", nodes.Import: "{% import %}",
    nodes.FromImport: "{% from ... import %}", nodes.Macro: "{% macro %}",
    nodes.CallBlock: "{% call %}",
}


class TemplateLimitExceeded(ValueError):
    """A render went past MAX_RENDER_OPERATIONS, MAX_RENDER_CHARS, MAX_RENDER_SECONDS or
    MAX_OUTPUT_CHARS; the message says which."""


class _Budget:
    __slots__ = ("operations", "chars", "deadline")

    def __init__(self) -> None:
        self.operations = 0
        self.chars = 0
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS

    def spend(self, *, operations: int = 1, chars: int = 0) -> None:
        self.operations += operations
        self.chars += chars
        if self.operations > MAX_RENDER_OPERATIONS:
            raise TemplateLimitExceeded(
                f"template does more than {MAX_RENDER_OPERATIONS} operations (loops, calls)")
        if self.chars > MAX_RENDER_CHARS:
            raise TemplateLimitExceeded(f"template produces more than {MAX_RENDER_CHARS} "
                                        "characters")
        if time.monotonic() > self.deadline:
            raise TemplateLimitExceeded(f"template takes longer than {MAX_RENDER_SECONDS}s")


# The budget of the render under way; every render opens one (_BudgetedTemplate.render).
_budget: ContextVar[_Budget | None] = ContextVar("engage_template_budget", default=None)


def _spend(*, operations: int = 1, chars: int = 0) -> None:
    budget = _budget.get()
    if budget is not None:
        budget.spend(operations=operations, chars=chars)


def _size_checked(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_OUTPUT_CHARS:
        raise TemplateLimitExceeded(f"a value of more than {MAX_OUTPUT_CHARS} characters")
    if isinstance(value, list | tuple) and len(value) > MAX_SEQUENCE_ITEMS:
        raise TemplateLimitExceeded(f"a list of more than {MAX_SEQUENCE_ITEMS} items")
    return value


def _not_callable(value: Any) -> Any:
    # A method output uncalled would print its repr: an address in memory, nothing to show.
    if callable(value) and not isinstance(value, str):
        raise SecurityError("a method cannot be output; call it, or use a placeholder")
    return value


@pass_context
def _iterate(context: Any, iterable: Any) -> Iterator[Any]:
    """A {% for %} loop's iterable, each turn spent from the budget."""
    for item in iterable:
        _spend()
        yield item


@pass_context
def _concat(context: Any, values: list[Any]) -> str:
    """The `~` operator, as Jinja joins it, with its result's size checked."""
    for value in values:
        _not_callable(value)
    joined = markup_join(values) if context.eval_ctx.autoescape else str_join(values)
    _spend(chars=len(joined))
    return _size_checked(joined)


@pass_context
def _output(context: Any, value: Any) -> Any:
    """Whatever a template outputs, into a buffer or the result: its size spent."""
    _spend(chars=len(value) if isinstance(value, str) else len(str(value)))
    return value


@pass_eval_context
def _replace(eval_ctx: Any, value: Any, old: Any, new: Any, count: int | None = None) -> Any:
    """The `replace` filter, refused before it runs when its result would be too long."""
    text, old_text, new_text = str(value), str(old), str(new)
    found = text.count(old_text) if old_text else len(text) + 1
    if count is not None and count >= 0:
        found = min(found, count)
    if len(text) + found * (len(new_text) - len(old_text)) > MAX_OUTPUT_CHARS:
        raise TemplateLimitExceeded(f"replace would make more than {MAX_OUTPUT_CHARS} "
                                    "characters")
    return DEFAULT_FILTERS["replace"](eval_ctx, value, old, new, count)


def _filter_checked(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)  # keeps jinja_pass_arg, which says what Jinja passes first
    def checked(*args: Any, **kwargs: Any) -> Any:
        _spend()
        return _size_checked(function(*args, **kwargs))
    return checked


class _StrMethod:
    """A string method read in a template: called as the method, shown by its name only. Jinja
    may fold `{{ 'a'.upper }}` into text when it compiles, past `finalize`, and a bound
    method's own repr holds an address in memory."""

    __slots__ = ("method",)

    def __init__(self, method: Any) -> None:
        self.method = method

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.method(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<text method {self.method.__name__}>"

    __str__ = __repr__


def _method_shown_by_name(value: Any) -> Any:
    if isinstance(value, types.BuiltinMethodType) and isinstance(value.__self__, str):
        return _StrMethod(value)
    return value


class _Budgeted(NodeTransformer):
    """Rewrites a parsed template so its loops, `~` joins and outputs go through the budget
    (_iterate, _concat, _output): none of them passes through the sandbox's hooks.

    Only outputs that can repeat or pile up in a buffer are counted (in a loop, a macro or a
    block assigned or filtered): the template's top-level text is streamed and capped by
    _BudgetedTemplate.render already, and counting it would cost every render for nothing."""

    def __init__(self) -> None:
        self.buffered = 0

    def _inside(self, node: nodes.Node) -> nodes.Node:
        self.buffered += 1
        try:
            return self.generic_visit(node)
        finally:
            self.buffered -= 1

    def visit_For(self, node: nodes.For) -> nodes.Node:
        node = self._inside(node)
        node.iter = nodes.Filter(node.iter, "_engage_iterate", [], [], None, None,
                                 lineno=node.lineno)
        return node

    visit_Macro = visit_CallBlock = visit_FilterBlock = visit_AssignBlock = _inside

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        node = self.generic_visit(node)
        return nodes.Filter(nodes.List(node.nodes, lineno=node.lineno), "_engage_concat", [],
                            [], None, None, lineno=node.lineno)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        node = self.generic_visit(node)
        if not self.buffered:
            return node
        counted: list[nodes.Expr] = []
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                # Literal text, kept unescaped as Jinja outputs it.
                child = nodes.MarkSafe(nodes.Const(child.data, lineno=child.lineno),
                                       lineno=child.lineno)
            counted.append(nodes.Filter(child, "_engage_output", [], [], None, None,
                                        lineno=child.lineno))
        node.nodes = counted
        return node


class _BudgetedTemplate(Template):
    def render(self, *args: Any, **kwargs: Any) -> str:
        token = _budget.set(_Budget()) if _budget.get() is None else None
        context = self.new_context(dict(*args, **kwargs))
        try:
            parts: list[str] = []
            size = 0
            for part in self.root_render_func(context):
                size += len(part)
                if size > MAX_OUTPUT_CHARS:
                    raise TemplateLimitExceeded(f"rendered text exceeds {MAX_OUTPUT_CHARS} "
                                                "characters")
                parts.append(part)
            return self.environment.concat(parts)  # type: ignore[attr-defined]
        except Exception:
            self.environment.handle_exception()
        finally:
            if token is not None:
                _budget.reset(token)


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, with what it leaves open closed: no globals (range, lipsum, cycler,
    joiner, namespace, dict), an allow-list of filters and callable string methods, operators
    that could build huge values checked before they run, and every render on a budget."""

    template_class = _BudgetedTemplate
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options: Any) -> None:
        # finalize sees every value a template outputs, at the top level too.
        super().__init__(finalize=_not_callable, **options)
        self.globals.clear()
        self.filters = {name: _filter_checked(function)
                        for name, function in self.filters.items() if name in SAFE_FILTERS}
        self.filters["replace"] = _filter_checked(_replace)
        self.filters.update(_engage_iterate=_iterate, _engage_concat=_concat,
                            _engage_output=_output)

    def wrap_str_format(self, value: Any) -> None:
        # str.format and format_map are not on SAFE_STR_METHODS: no wrapper, refused instead.
        return None

    def getattr(self, obj: Any, attribute: str) -> Any:
        return _method_shown_by_name(super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        return _method_shown_by_name(super().getitem(obj, argument))

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        # A method read but not called would print its repr (an address in memory), and a
        # dict's (the member's) methods are no placeholder: only string methods on the list.
        if callable(value) and not isinstance(value, Macro | LoopContext | _StrMethod) and not (
                isinstance(obj, str) and attr in SAFE_STR_METHODS):
            return False
        return super().is_safe_attribute(obj, attr, value)

    def _generate(self, source: nodes.Template, name: str | None, filename: str | None,
                  defer_init: bool = False) -> str:
        return super()._generate(_Budgeted().visit(source), name, filename,
                                 defer_init=defer_init)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _spend()
        if not (isinstance(__obj, Macro | LoopContext) or (
                isinstance(__obj, _StrMethod) and __obj.method.__name__ in SAFE_STR_METHODS)):
            raise SecurityError(f"{getattr(__obj, '__name__', type(__obj).__name__)} cannot "
                                "be called in a template")
        return _size_checked(super().call(__context, __obj, *args, **kwargs))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _spend()
        if operator == "%" and isinstance(left, str):
            raise SecurityError("string formatting with % is not available in templates")
        if operator == "**" and isinstance(right, int | float) and (
                abs(right) > 100 or (isinstance(left, int | float) and abs(left) > 1
                                     and right * math.log10(abs(left)) > 1000)):
            raise TemplateLimitExceeded("power too large")
        if operator == "*":
            for sequence, factor in ((left, right), (right, left)):
                if isinstance(sequence, str | list | tuple) and isinstance(factor, int):
                    limit = MAX_OUTPUT_CHARS if isinstance(sequence, str) \
                        else MAX_SEQUENCE_ITEMS
                    if len(sequence) * abs(factor) > limit:
                        raise TemplateLimitExceeded("repetition too large")
        if operator == "+" and isinstance(left, str | list | tuple) \
                and isinstance(right, str | list | tuple):
            limit = MAX_OUTPUT_CHARS if isinstance(left, str) else MAX_SEQUENCE_ITEMS
            if len(left) + len(right) > limit:
                raise TemplateLimitExceeded("concatenation too large")
        result = super().call_binop(context, operator, left, right)
        if isinstance(result, str):
            _spend(chars=len(result))
        return result


_env = _Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
_html_env = _Environment(undefined=StrictUndefined, autoescape=True, keep_trailing_newline=True)


def _callee_name(node: nodes.Expr) -> str:
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node, nodes.Name):
        return node.name
    return "an expression"


def _refused_constructs(ast: nodes.Template) -> list[str]:
    """What a template uses that is not available in templates, for the marketer."""
    problems: list[str] = []
    for kind, tag in REFUSED_TAGS.items():
        if any(True for _ in ast.find_all(kind)):
            problems.append(f"{tag} is not available in templates")
    filters = {node.name for node in ast.find_all(nodes.Filter)} - SAFE_FILTERS
    if filters:
        problems.append(f"filter(s) {', '.join(sorted(filters))} not available; available: "
                        + ", ".join(sorted(SAFE_FILTERS)))
    private = {node.attr for node in ast.find_all(nodes.Getattr) if node.attr.startswith("_")}
    private |= {str(node.arg.value) for node in ast.find_all(nodes.Getitem)
                if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str)
                and node.arg.value.startswith("_")}
    if private:
        problems.append(f"names starting with _ are not available: {', '.join(sorted(private))}")
    calls = {_callee_name(node.node) for node in ast.find_all(nodes.Call)
             if not (isinstance(node.node, nodes.Getattr) and node.node.attr in SAFE_STR_METHODS)}
    if calls:
        problems.append(f"calling {', '.join(sorted(calls))} is not available; text methods "
                        f"that are: {', '.join(sorted(SAFE_STR_METHODS))}")
    return problems


def _unknown_placeholders(ast: nodes.Template, *, names: frozenset[str]) -> set[str]:
    unknown: set[str] = set()
    for name in ast.find_all(nodes.Name):
        if name.ctx == "load" and name.name != "member" and name.name not in names:
            unknown.add(name.name)
    for getattr_node in ast.find_all(nodes.Getattr):
        target = getattr_node.node
        if isinstance(target, nodes.Name) and target.name == "member":
            if getattr_node.attr not in MEMBER_PLACEHOLDERS:
                unknown.add(f"member.{getattr_node.attr}")
    for getitem in ast.find_all(nodes.Getitem):
        target = getitem.node
        if isinstance(target, nodes.Name) and target.name == "member":
            key = getitem.arg
            if not (isinstance(key, nodes.Const) and key.value in MEMBER_PLACEHOLDERS):
                unknown.add("member[...]")
    return unknown


# What marks text as markup rather than prose. Single * and _ count only as a pair hugging
# a word ("*bold*"), so "5* hotel" and snake_case names pass.
_MARKUP = (
    ("an HTML tag", re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(\s[^<>]*)?/?>")),
    ("an HTML entity", re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);")),
    ("Markdown bold (**...** or *...*)",
     re.compile(r"\*\*[^*\n]+\*\*|(?<![\w*])\*[^*\s](?:[^*\n]*[^*\s])?\*(?![\w*])")),
    ("Markdown italics or underline (_..._ or __...__)",
     re.compile(r"__[^_\n]+__|(?<![\w_])_[^_\s](?:[^_\n]*[^_\s])?_(?![\w_])")),
    ("Markdown code (`...`)", re.compile(r"`[^`\n]+`")),
    ("a Markdown link ([text](url))", re.compile(r"\[[^\]\n]+\]\([^)\s]+\)")),
    ("a Markdown heading (# ...)", re.compile(r"(?m)^ {0,3}#{1,6} ")),
    ("Markdown strikethrough or spoiler (~~...~~, ||...||)",
     re.compile(r"~~[^~\n]+~~|\|\|[^|\n]+\|\|")),
)


def plain_text_problem(text: str) -> str:
    """What in `text` is markup ('' when it is plain text)."""
    for what, pattern in _MARKUP:
        found = pattern.search(text)
        if found:
            return f"plain text only: {what} found ({found.group(0)[:40]!r})"
    return ""


# Keys of a push's data that Engage itself sets.
PUSH_DATA_RESERVED = frozenset({"engage_message_id", "link", "image"})
RICH_CHANNELS = frozenset({"push", "viber"})


def _link_problem(url: str) -> str:
    scheme, _, rest = url.partition(":")
    if not rest or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        return "must be a URL with its scheme: https://... or an app deep link (myapp://...)"
    if scheme.lower() in ("javascript", "data", "vbscript", "file"):
        return f"a {scheme}: link is refused"
    return ""


def rich_content_errors(*, channel: str, image_url: str, link_url: str, button_text: str,
                        push_data: Any) -> dict[str, str]:
    """What is wrong with a template's image, link, button and push data for its channel."""
    errors: dict[str, str] = {}
    if channel not in RICH_CHANNELS:
        for name, value in (("image_url", image_url), ("link_url", link_url),
                            ("button_text", button_text), ("push_data", push_data)):
            if value:
                errors[name] = "only push and Viber messages carry an image, link or button"
        return errors
    if image_url and not image_url.lower().startswith("https://"):
        errors["image_url"] = "must be an https:// URL (apps and Viber refuse plain http images)"
    if link_url:
        problem = _link_problem(link_url)
        if problem:
            errors["link_url"] = problem
        elif channel == "viber" and not link_url.lower().startswith(("https://", "http://")):
            errors["link_url"] = "a Viber button opens a web page: an http(s) URL"
    if button_text and channel != "viber":
        errors["button_text"] = "only Viber messages have a button; a push opens its link"
    elif button_text and not link_url:
        errors["button_text"] = "a button needs the link it opens (link_url)"
    if push_data and channel != "push":
        errors["push_data"] = "only push messages carry data for the app"
    elif push_data:
        if not isinstance(push_data, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in push_data.items()):
            errors["push_data"] = 'must be an object of text keys and text values: {"k": "v"}'
        elif reserved := sorted(PUSH_DATA_RESERVED & push_data.keys()):
            errors["push_data"] = f"{', '.join(reserved)}: set by Engage; use other keys"
    return errors


def template_rich_content(template: Any) -> dict[str, Any]:
    """The OutboundMessage fields a template gives every member alike: image, link, button,
    push data (they hold no placeholders)."""
    return {"image_url": template.image_url, "link_url": template.link_url,
            "button_text": template.button_text, "data": dict(template.push_data or {})}


def template_validate(*, channel: str, subject: str, body: str, html_body: str = "",
                      image_url: str = "", link_url: str = "", button_text: str = "",
                      push_data: Any = None) -> None:
    """Raise ValidationError naming the field whose syntax, placeholders or content is wrong."""
    errors: dict[str, str] = rich_content_errors(
        channel=channel, image_url=image_url, link_url=link_url, button_text=button_text,
        push_data=push_data or {})
    names = MESSAGE_PLACEHOLDERS.get(channel, frozenset())
    for field, source in (("subject", subject), ("body", body), ("html_body", html_body)):
        if not source:
            continue
        try:
            ast = _env.parse(source)
        except TemplateSyntaxError as exc:
            errors[field] = f"template syntax error on line {exc.lineno}: {exc.message}"
            continue
        refused = _refused_constructs(ast)
        if refused:
            errors[field] = "; ".join(refused)
            continue
        unknown = _unknown_placeholders(ast, names=names)
        if unknown:
            errors[field] = (
                f"unknown placeholder(s): {', '.join(sorted(unknown))}; available: "
                + ", ".join([f"member.{p}" for p in sorted(MEMBER_PLACEHOLDERS)]
                            + sorted(names))
            )
    if channel == "email" and not subject:
        errors.setdefault("subject", "an email needs a subject")
    if channel == "social":
        # Messenger networks (and the aggregators in front of them) moderate markup away or
        # refuse it: the social channel carries plain text.
        if html_body.strip():
            errors.setdefault("html_body", "the social channel sends plain text only; leave "
                                           "it empty")
        problem = plain_text_problem(body)
        if problem:
            errors.setdefault("body", problem)
    if errors:
        raise ValidationError(errors)


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str
    html_body: str


class CompiledTemplate:
    """A template compiled once per batch and rendered per member.

    A template that does not compile (saved before a rule it breaks, or written past the
    save-time check) raises when rendered, so it fails each member's message with the reason
    instead of the whole batch."""

    def __init__(self, *, subject: str, body: str, html_body: str = "") -> None:
        self._error: Exception | None = None
        try:
            self._subject = _compile(subject, html=False)
            self._body = _compile(body, html=False)
            self._html = _compile(html_body, html=True) if html_body else None
        except TemplateError as exc:
            self._error = exc

    def render(self, member: Mapping[str, Any], *, unsubscribe_url: str | None = None
               ) -> Rendered:
        if self._error is not None:
            raise self._error
        context: dict[str, Any] = {"member": member}
        if unsubscribe_url is not None:
            context["unsubscribe_url"] = unsubscribe_url
        # One budget for the message's three parts.
        token = _budget.set(_Budget())
        try:
            rendered = Rendered(
                subject=" ".join(self._subject.render(context).split()),
                body=self._body.render(context),
                html_body=self._html.render(context) if self._html else "",
            )
        finally:
            _budget.reset(token)
        if len(rendered.body) + len(rendered.html_body) > MAX_OUTPUT_CHARS:
            raise TemplateLimitExceeded(f"rendered message exceeds {MAX_OUTPUT_CHARS} "
                                        "characters")
        return rendered


@lru_cache(maxsize=256)
def _compile(source: str, *, html: bool) -> Any:
    return (_html_env if html else _env).from_string(source)


def member_context(values: Mapping[str, Any]) -> dict[str, Any]:
    """The `member` placeholder dict from a row of `Message.objects.values(*MEMBER_VALUE_PATHS)`."""
    member = {key: values.get(path) or "" for key, path in MEMBER_VALUE_PATHS.items()}
    member["full_name"] = f"{member['first_name']} {member['last_name']}".strip()
    return member


def member_value_paths() -> Iterable[str]:
    return MEMBER_VALUE_PATHS.values()
