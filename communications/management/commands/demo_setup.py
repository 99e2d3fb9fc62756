"""`manage.py demo_setup`: what `make run` does before it starts the worker and the web server."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.urls import NoReverseMatch, reverse

from communications.demo import demo_setup, sink_directory
from communications.services import mailing_schedulable_errors


class Command(BaseCommand):
    help = ("Create the demo (members if the database has none, a draft mailing to a local "
            "sink, a `marketer` login) and print where everything is. Safe to run again.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--base-url", default="http://127.0.0.1:8000",
                            help="Where `make run` serves the site.")

    def handle(self, *args: Any, base_url: str, **options: Any) -> None:
        demo = demo_setup()
        base_url = base_url.rstrip("/")
        mailing = demo.mailing
        try:
            mailing_path = reverse("admin:communications_mailing_change", args=[mailing.pk])
        except NoReverseMatch:  # the mailing admin is not registered (yet)
            mailing_path = f"{reverse('admin:index')}communications/mailing/{mailing.pk}/change/"
        errors = mailing_schedulable_errors(mailing=mailing)
        if mailing.state != mailing.State.DRAFT:
            mailing_note = mailing.get_state_display().lower()
        elif errors:
            mailing_note = "draft, not ready: " + "; ".join(errors.values())
        else:
            mailing_note = "draft, ready to start"
        if demo.seeded:
            seeded = ", ".join(f"{count:,} {table.replace('_', ' ')}"
                               for table, count in demo.seeded.items() if count)
            self.stdout.write(f"Seeded the demo: {seeded}.")

        lines = [
            "",
            f"Engage is starting at {base_url}/",
            f"  admin         {base_url}{reverse('admin:index')}",
            f"                login {demo.username} / {demo.password}"
            f"  (kept in {demo.password_file})",
            f"  API docs      {base_url}{reverse('api-docs')}",
            f"  health        {base_url}{reverse('healthz')}",
            f"  demo mailing  {base_url}{mailing_path}  ({mailing_note})",
            f"  sent emails   {sink_directory(demo.gateway)}/  (.eml files; "
            f"ENGAGE_SINK_DIR={settings.ENGAGE_SINK_DIR})",
            "",
            "Press Ctrl-C to stop.",
            "",
        ]
        self.stdout.write("\n".join(lines))
