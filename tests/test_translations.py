"""Every text of the member's pages and messages is translated in each language we ship."""

from __future__ import annotations

import gettext
import json
import re
from pathlib import Path

import pytest
from django.conf import settings

CATALOGS = sorted(Path(settings.BASE_DIR, "locale").glob("*/LC_MESSAGES/django.po"))
ENTRY = re.compile(r'msgid ((?:".*"\n)+)msgstr ((?:".*"\n)+)')


@pytest.mark.parametrize("catalog", CATALOGS, ids=lambda path: path.parts[-3])
def test_every_message_of_the_catalog_is_translated(catalog):
    text = catalog.read_text(encoding="utf-8")
    untranslated = [msgid for msgid, msgstr in ENTRY.findall(text)
                    if msgid.strip() != '""' and msgstr.strip() == '""']

    assert untranslated == [], "run `make messages` after adding to locale/<lang>.json"


def _text(block: str) -> str:
    return "".join(json.loads(line) for line in block.strip().splitlines())


@pytest.mark.parametrize("catalog", CATALOGS, ids=lambda path: path.parts[-3])
def test_the_compiled_catalog_says_what_its_source_says(catalog):
    source = {_text(msgid): _text(msgstr)
              for msgid, msgstr in ENTRY.findall(catalog.read_text(encoding="utf-8"))
              if _text(msgid)}
    with catalog.with_suffix(".mo").open("rb") as compiled:
        translations = gettext.GNUTranslations(compiled)

    assert {msgid: translations.gettext(msgid) for msgid in source} == source, \
        "run `make messages`"


@pytest.mark.parametrize("catalog", CATALOGS, ids=lambda path: path.parts[-3])
def test_no_translation_is_left_fuzzy(catalog):
    # compilemessages leaves fuzzy entries out: the page would show English for them.
    entries = catalog.read_text(encoding="utf-8").split("\n\n")[1:]  # [0] is the header

    assert [entry for entry in entries if re.search(r"^#,.*\bfuzzy\b", entry, re.M)] == []
