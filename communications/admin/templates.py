"""Message templates, per channel and language."""
from __future__ import annotations

from collections.abc import Sequence

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from communications.admin.editing import (
    State,
    busy_states,
)
from communications.models import (
    Template,
)
from communications.renderers import MEMBER_PLACEHOLDERS

TEMPLATE_FIELDS = ["name", "channel", "language", "subject", "body", "mjml_body", "html_body",
                   "image_url", "link_url", "button_text", "push_data"]
PLACEHOLDERS_HELP = "Placeholders: " + ", ".join(
    f"{{{{ member.{name} }}}}" for name in sorted(MEMBER_PLACEHOLDERS)
) + "; in email also {{ unsubscribe_url }} (the member's one-click unsubscribe link)."


class TemplateForm(forms.ModelForm):
    class Meta:
        model = Template
        fields = TEMPLATE_FIELDS
        help_texts = {"subject": PLACEHOLDERS_HELP, "body": PLACEHOLDERS_HELP}


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    form = TemplateForm
    list_display = ["name", "channel", "language", "subject", "updated_at"]
    list_filter = ["channel", "language"]
    search_fields = ["name", "subject"]

    def get_readonly_fields(self, request: HttpRequest,
                            obj: Template | None = None) -> Sequence[str]:
        busy = busy_states(obj.mailings.all()) if obj is not None else set()
        # A sending mailing renders each batch from this row: an edit now would give members
        # of one mailing different texts.
        if State.SENDING in busy:
            return TEMPLATE_FIELDS
        if busy:
            return ["channel"]
        return []


