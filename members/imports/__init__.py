"""CSV import of members with their consents: every row validated, the writes set-based.

The columns (a header row, UTF-8, comma separated): `external_id` (required); the profile
fields of `PROFILE_FIELDS` but `status` and `custom_attributes`; `attr.<key>` per declared
custom attribute (an empty cell removes it); `consent.<channel>` (granted / withdrawn, yes / no,
true / false, 1 / 0; empty leaves the consent as it is); `consent_text` and `consented_at`, the
wording shown and when the row's consents were given (the import time when absent).

The file is read in blocks of whole records (~1 MB), never whole. Each block is parsed and
cleaned with the rules of `member_fields_clean`, picked once per column, in forked worker
processes when the file is big (~30 µs a row, its COPY text included), then, in the import's
one transaction, COPYed (executemany on SQLite) into a TEMP staging table (made for the first
block, truncated for the next), upserted with one INSERT ... SELECT ... ON CONFLICT, and its
consent cells that change something written to the ledger and the current consents. While
the database writes one block the workers clean the next ones. A bad row stops the writing but
not the checking, so the report names every bad row, and the transaction is rolled back:
nothing is imported unless bad rows may be skipped.

Imported consent events carry the file's evidence (source "import", `consent_text`, the time).
An imported email grant sends no double opt-in confirmation, as `consent_record` would: a
million-row import would mail every member at once. With double opt-in on, an imported address
stays unmarketable until its member confirms it.
"""

from members.imports.layout import (
    ATTRIBUTE_PREFIX,
    CONSENT_PREFIX,
    IMPORT_PROFILE_FIELDS,
    BadRow,
    ImportReport,
)
from members.imports.reading import import_workers
from members.imports.writing import members_import

__all__ = [
    "ATTRIBUTE_PREFIX", "CONSENT_PREFIX", "IMPORT_PROFILE_FIELDS", "BadRow", "ImportReport",
    "import_workers", "members_import",
]
