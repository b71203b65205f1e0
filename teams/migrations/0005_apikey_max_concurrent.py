"""A key's ceiling on requests in flight at once (`max_concurrent`) joins the sealed binding,
like rpm and every other limit of a key.

PostgreSQL: the guard trigger of 0002 covers every column but the mutable ones, so nothing to
do. SQLite: the guard's column list is explicit and a table rebuild would drop the triggers,
so, as in 0004, they are dropped first and recreated with `max_concurrent` in the list.
"""

from __future__ import annotations

import importlib

from django.db import migrations, models

# The module name starts with a digit: imported, not named in an import statement.
_previous = importlib.import_module("teams.migrations.0004_apikey_tools")

BOUND_0004 = _previous.BOUND
BOUND = (*BOUND_0004, "max_concurrent")


class Migration(migrations.Migration):
    dependencies = [("teams", "0004_apikey_tools")]

    operations = [
        migrations.RunPython(
            _previous._on_sqlite(_previous.SQLITE_DROP), _previous._on_sqlite(_previous.sqlite_create(BOUND_0004))
        ),
        migrations.AddField(
            model_name="apikey",
            name="max_concurrent",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="Most requests in flight at once (all workers and instances); empty = unlimited.",
                null=True,
            ),
        ),
        migrations.RunPython(_previous._on_sqlite(_previous.sqlite_create(BOUND)), _previous._on_sqlite(_previous.SQLITE_DROP)),
    ]
