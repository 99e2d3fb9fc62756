"""Template -> channel payload, rendered in a Jinja2 sandbox.

Marketers write templates, so they are untrusted code: they render in an immutable sandbox over
plain dicts (never model instances), with undefined names an error and the output size capped.
Placeholders are checked against `MEMBER_PLACEHOLDERS` (and the channel's
`MESSAGE_PLACEHOLDERS`) when a template is saved.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.core.exceptions import ValidationError
from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

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


class _Environment(ImmutableSandboxedEnvironment):
    # Repetition and big powers are the classic ways to make a sandboxed template burn CPU and
    # memory before any output limit can be checked, so they are capped before they run.
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > 100:
            raise ValueError("exponent too large")
        if operator == "*":
            sizes = [len(v) for v in (left, right) if isinstance(v, str | list | tuple)]
            factors = [v for v in (left, right) if isinstance(v, int) and not isinstance(v, bool)]
            if sizes and factors and sizes[0] * abs(factors[0]) > MAX_OUTPUT_CHARS:
                raise ValueError("repetition too large")
        return super().call_binop(context, operator, left, right)


_env = _Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
_html_env = _Environment(undefined=StrictUndefined, autoescape=True, keep_trailing_newline=True)


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
    """A template compiled once per batch and rendered per member."""

    def __init__(self, *, subject: str, body: str, html_body: str = "") -> None:
        self._subject = _compile(subject, html=False)
        self._body = _compile(body, html=False)
        self._html = _compile(html_body, html=True) if html_body else None

    def render(self, member: Mapping[str, Any], *, unsubscribe_url: str | None = None
               ) -> Rendered:
        context: dict[str, Any] = {"member": member}
        if unsubscribe_url is not None:
            context["unsubscribe_url"] = unsubscribe_url
        rendered = Rendered(
            subject=" ".join(self._subject.render(context).split()),
            body=self._body.render(context),
            html_body=self._html.render(context) if self._html else "",
        )
        if len(rendered.body) + len(rendered.html_body) > MAX_OUTPUT_CHARS:
            raise ValueError(f"rendered message exceeds {MAX_OUTPUT_CHARS} characters")
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
