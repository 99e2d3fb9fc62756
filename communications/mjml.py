"""Email HTML written in MJML, compiled when the template is saved (MRML, the Rust port of
MJML) with its CSS inlined into the tags (css-inline), since most mail clients drop or
ignore a <style> block; the block stays too, for the responsive @media rules MJML writes."""
from __future__ import annotations

import css_inline
import mrml
from django.core.exceptions import ValidationError

# No stylesheet is fetched at save time: MJML links a web font that the mail client loads.
_INLINER = css_inline.CSSInliner(load_remote_stylesheets=False, keep_style_tags=True)


def mjml_compile(source: str) -> str:
    """The email HTML of an MJML document; ValidationError on `mjml_body` when it is not
    one. Jinja placeholders pass through as text and are rendered per member at send time."""
    if not source.lstrip().startswith("<mjml"):
        raise ValidationError({"mjml_body": "an MJML document starts with <mjml>"})
    try:
        html = mrml.to_html(source).content
        return _INLINER.inline(html)
    except (OSError, ValueError, css_inline.InlineError) as exc:
        raise ValidationError({"mjml_body": f"not valid MJML: {exc}"}) from exc
