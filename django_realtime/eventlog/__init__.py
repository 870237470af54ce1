"""Write to and tail the event log, safely for each database.

The commit-order trap: ids come from a sequence at INSERT, but transactions
commit in any order.  A tailer that saw id 11 committed and moved past it
while id 10's transaction was still open would never deliver 10; one that
waited for 10 would hold 11 back, and everything after it.  So a tailer
delivers 11 at once and keeps 10 *pending* in its cursor (cursor.py): every
read asks for the pending ids again, and 10 is delivered when it commits.
A pending id leaves the cursor when it arrives or is known dead, by a rule
per database, each in its own module (``tailers.tailer_for`` picks one):

* SQLite serialises writers: a writer holds the database's write lock from
  its INSERT to its COMMIT, so ids become visible in order, and a rolled
  back id is handed out again.  No id is ever pending (``tailers.SerialTailer``).
* PostgreSQL: each publish first takes a shared advisory lock, held to the
  end of its transaction, and only then draws its id.  When a tailer sees a
  gap below id V, it notes which transactions hold that lock; once all of
  them have ended, every id up to V is either visible or dead (``postgres``).
* MySQL and MariaDB: the same, with the InnoDB transactions open at the
  sighting (information_schema.INNODB_TRX) (``innodb``).
* Other databases: a gap is waited for GAP_TIMEOUT seconds, then skipped,
  and the skip recorded so that every process and every replay agree (see
  ``django_realtime.skips``) (``timeout``).

The rows themselves (the event type, insert, reads, the high-water mark)
are in ``rows``.
"""

from .rows import PAGE, PAGE_BYTES, Item, Row, high_water_mark, insert_event, pruned_after, read_page, read_rows
from .tailers import GapTailer, Tailer, tailer_for

__all__ = [
    "PAGE",
    "PAGE_BYTES",
    "GapTailer",
    "Item",
    "Row",
    "Tailer",
    "high_water_mark",
    "insert_event",
    "pruned_after",
    "read_page",
    "read_rows",
    "tailer_for",
]
