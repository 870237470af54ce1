"""MySQL and MariaDB: channel names compare byte for byte (``utf8mb4_bin``), as they do elsewhere.

MySQL and MariaDB compare text through the column's collation, by default a
case-insensitive one (``utf8mb4_general_ci``, ``utf8mb4_0900_ai_ci``): a
replay of ``CALL:1-2`` returned the rows of the pair channel ``call:1-2``,
the presence list of one listed the other's members, and the two shared one
prune mark (security review, issue 20).  So every column that holds a channel
name and is compared with one becomes ``utf8mb4_bin``, its type, NULL-ness
and indexes unchanged; a table the log has grown in is rewritten, and no row
is lost (channel names are ASCII: no value changes).  The ``_bin`` collations
pad with spaces, which cannot matter: a channel name holds none.  Tables
created afresh get it too, 0001 to 0005 having created them just before.

PostgreSQL and SQLite already compare bytes: a database's default collation
on PostgreSQL is deterministic (equal only if the bytes are), SQLite's is
BINARY; tests/test_channel_collation.py runs the same checks on all three.
Nothing to do there.

Another migration that alters one of these columns must say the collation
again, on MySQL and MariaDB: Django's ALTER would give it the table's default.
Reversed, the columns take their table's default collation again; that fails,
losing nothing, if two prune marks differ only in case.
"""

from django.db import migrations

#: Every column that holds a channel name: (model, field).
CHANNEL_COLUMNS = (("Event", "channel"), ("PruneMark", "channel"), ("PresenceMember", "channel"))


def _modify(apps, schema_editor, collation):
    """Give every channel column *collation* (a function of the table's name), nothing else changed."""
    connection = schema_editor.connection
    quote = schema_editor.quote_name
    for model_name, field_name in CHANNEL_COLUMNS:
        model = apps.get_model("django_realtime", model_name)
        field = model._meta.get_field(field_name)
        table = model._meta.db_table
        schema_editor.execute(
            f"ALTER TABLE {quote(table)} MODIFY {quote(field.column)} {field.db_type(connection)} "
            f"{collation(table)} {'NULL' if field.null else 'NOT NULL'}"
        )


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "mysql":
        return
    _modify(apps, schema_editor, lambda table: "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "mysql":
        return

    def table_default(table):
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(
                "SELECT TABLE_COLLATION FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                "AND TABLE_NAME = %s",
                [table],
            )
            (name,) = cursor.fetchone()
        return f"COLLATE {name}"  # its character set goes with it

    _modify(apps, schema_editor, table_default)


class Migration(migrations.Migration):
    dependencies = [("django_realtime", "0005_presence")]

    # Not in a transaction: MySQL commits each ALTER TABLE anyway, and Django
    # refuses DDL inside one on a database that cannot roll it back.
    operations = [migrations.RunPython(forwards, backwards, atomic=False, elidable=False)]
