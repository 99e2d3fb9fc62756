"""The import's columns and header, its report and its bad rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from members.models import (
    Channel,
    ConsentEvent,
    CustomAttribute,
    Member,
)
from members.services.profiles import PROFILE_FIELDS

IMPORT_PROFILE_FIELDS = tuple(f for f in PROFILE_FIELDS if f not in ("status", "custom_attributes"))
ATTRIBUTE_PREFIX = "attr."
CONSENT_PREFIX = "consent."
GRANT, WITHDRAW = ConsentEvent.Action.GRANT.value, ConsentEvent.Action.WITHDRAW.value
CONSENT_ACTIONS = {
    "granted": GRANT, "yes": GRANT, "true": GRANT, "1": GRANT,
    "withdrawn": WITHDRAW, "no": WITHDRAW, "false": WITHDRAW, "0": WITHDRAW,
}
EXTERNAL_ID_MAX = Member._meta.get_field("external_id").max_length
NOT_IMPORTED = {
    "status": "the status is not imported: block a member, or erase one, in the admin or the API",
    "custom_attributes": "use one attr.<key> column per custom attribute",
}

ERASED_REASON = "this member was erased and cannot be changed"


class BadRow(NamedTuple):
    line: int  # in the file, the header being line 1
    column: str
    reason: str


@dataclass
class ImportReport:
    """What an import did, or in a dry run would do. Nothing is written when `imported` is
    False: a dry run, a header error, or bad rows without `skip_bad_rows`."""

    rows: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0  # bad rows left out under skip_bad_rows
    consent_events: int = 0
    dry_run: bool = False
    imported: bool = False
    seconds: float = 0.0
    bad_rows: list[BadRow] = field(default_factory=list)

    @property
    def bad_lines(self) -> int:
        return len({row.line for row in self.bad_rows})

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["bad_rows"] = [row._asdict() for row in self.bad_rows]
        return data

    def summary(self) -> str:
        verb = "would create" if self.dry_run else "created"
        head = ("Dry run" if self.dry_run else "Imported" if self.imported
                else "Nothing imported")
        return (f"{head}: {self.rows} rows, {verb} {self.created}, "
                f"{'would update' if self.dry_run else 'updated'} {self.updated}, "
                f"{self.bad_lines} bad rows{' skipped' if self.skipped else ''}, "
                f"{self.consent_events} consent events ({self.seconds:.1f} s, "
                f"{self.rows_per_second:,.0f} rows/s)")


# --- the header -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """Where each known column sits in the file's rows."""

    columns: tuple[str, ...]
    external_id: int
    profile: tuple[tuple[str, int], ...]
    attributes: tuple[tuple[str, int], ...]
    consents: tuple[tuple[str, int], ...]
    consent_text: int | None
    consented_at: int | None

    def position(self, column: str) -> int:
        return self.columns.index(column) if column in self.columns else len(self.columns)


def layout_read(header: list[str], declared: Mapping[str, CustomAttribute]) -> tuple[
        Layout | None, list[BadRow]]:
    columns = tuple(name.strip() for name in header)
    errors: list[BadRow] = []
    profile, attributes, consents = [], [], []
    seen: set[str] = set()
    for index, name in enumerate(columns):
        if name in seen:
            errors.append(BadRow(1, name, "appears twice in the header"))
        seen.add(name)
        if name in IMPORT_PROFILE_FIELDS:
            profile.append((name, index))
        elif name.startswith(ATTRIBUTE_PREFIX):
            key = name.removeprefix(ATTRIBUTE_PREFIX)
            if key in declared:
                attributes.append((key, index))
            else:
                errors.append(BadRow(1, name, "unknown custom attribute; declared: "
                                              f"{', '.join(sorted(declared)) or 'none'}"))
        elif name.startswith(CONSENT_PREFIX):
            channel = name.removeprefix(CONSENT_PREFIX)
            if channel in Channel.values:
                consents.append((channel, index))
            else:
                errors.append(BadRow(1, name, f"unknown channel; use one of "
                                              f"{', '.join(Channel.values)}"))
        elif name in NOT_IMPORTED:
            errors.append(BadRow(1, name, NOT_IMPORTED[name]))
        elif name not in ("external_id", "consent_text", "consented_at"):
            errors.append(BadRow(1, name or f"#{index + 1}", "unknown column; expected "
                                 "external_id, profile fields, attr.<key> or consent.<channel>"))
    if "external_id" not in seen:
        errors.append(BadRow(1, "external_id", "the header has no external_id column"))
    if ("latitude" in seen) != ("longitude" in seen):
        errors.append(BadRow(1, "latitude" if "latitude" in seen else "longitude",
                             "latitude and longitude go together"))
    if errors:
        return None, errors
    return Layout(
        columns=columns, external_id=columns.index("external_id"), profile=tuple(profile),
        attributes=tuple(attributes), consents=tuple(consents),
        consent_text=columns.index("consent_text") if "consent_text" in seen else None,
        consented_at=columns.index("consented_at") if "consented_at" in seen else None,
    ), []
