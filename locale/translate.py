"""Fill the Russian catalog's empty entries from ru.json, then compile: `make messages`.

makemessages writes locale/ru/LC_MESSAGES/django.po from the sources; the translations are kept
in locale/ru.json and locale/ru.*.json (msgid -> msgstr, one file per part of the product)
so a re-extraction never loses them.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).parent
ENTRY = re.compile(r'(?P<head>(?:#.*\n)*)msgid (?P<id>(?:".*"\n)+)msgstr (?P<str>(?:".*"\n)+)')


def _unquote(block: str) -> str:
    return "".join(json.loads(line) for line in block.strip().splitlines())


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False) + "\n"


def _unfuzzy(head: str) -> str:
    """The comment lines without the `fuzzy` flag (msgmerge's guess, which compilemessages
    leaves out): the translation comes from the JSON, which a person wrote."""
    lines = []
    for line in head.splitlines(keepends=True):
        if line.startswith("#,"):
            flags = [flag.strip() for flag in line[2:].split(",") if flag.strip() != "fuzzy"]
            if not flags:
                continue
            line = "#, " + ", ".join(flags) + "\n"
        lines.append(line)
    return "".join(lines)


def main(language: str = "ru") -> int:
    catalog = HERE / language / "LC_MESSAGES" / "django.po"
    known: dict[str, str] = {}
    for path in sorted(HERE.glob(f"{language}*.json")):
        known.update(json.loads(path.read_text(encoding="utf-8")))
    missing: list[str] = []

    def fill(match: re.Match[str]) -> str:
        msgid, msgstr = _unquote(match["id"]), _unquote(match["str"])
        head = _unfuzzy(match["head"]) if msgid else match["head"]
        if msgid and not msgstr:
            if msgid in known:
                msgstr = known[msgid]
            else:
                missing.append(msgid)
        return f"{head}msgid {match['id']}msgstr {_quote(msgstr)}"

    text = ENTRY.sub(fill, catalog.read_text(encoding="utf-8"))
    catalog.write_text(text, encoding="utf-8")
    for msgid in missing:
        print(f"untranslated ({language}): {msgid!r}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
