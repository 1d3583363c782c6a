"""Usernames and emails unique whatever their case, enforced by the database: unique
indexes on lower(username) and lower(email) of the user table (the email one partial,
so users without an email do not collide). Same SQL on SQLite and PostgreSQL.

Existing case-duplicates would make the index fail half-way through a deploy; they
are listed and the migration stops before changing anything (see docs/accounts.md).
"""

from django.conf import settings
from django.db import migrations
from django.db.models import Count
from django.db.models.functions import Lower

USERNAME_INDEX = "accounts_user_username_lower_uniq"
EMAIL_INDEX = "accounts_user_email_lower_uniq"


def _user_table(apps, schema_editor):
    User = apps.get_model(settings.AUTH_USER_MODEL)
    quote = schema_editor.quote_name
    columns = {name: quote(User._meta.get_field(name).column) for name in ("username", "email")}
    return User, quote(User._meta.db_table), columns


def _duplicates(User, field):
    rows = User.objects.exclude(**{field: ""}).annotate(folded=Lower(field))
    clashes = rows.values("folded").annotate(n=Count("pk")).filter(n__gt=1)
    return list(clashes.values_list("folded", flat=True))


def create_indexes(apps, schema_editor):
    User, table, columns = _user_table(apps, schema_editor)
    clashes = {field: _duplicates(User, field) for field in ("username", "email")}
    if any(clashes.values()):
        raise RuntimeError(
            "Users differ only in the case of their username or email; make them unique first "
            f"(docs/accounts.md): {clashes}"
        )
    quote = schema_editor.quote_name
    schema_editor.execute(
        f"CREATE UNIQUE INDEX {quote(USERNAME_INDEX)} ON {table} (LOWER({columns['username']}))"
    )
    schema_editor.execute(
        f"CREATE UNIQUE INDEX {quote(EMAIL_INDEX)} ON {table} (LOWER({columns['email']})) "
        f"WHERE {columns['email']} <> ''"
    )


def drop_indexes(apps, schema_editor):
    for name in (USERNAME_INDEX, EMAIL_INDEX):
        schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(name)}")


class Migration(migrations.Migration):
    # After auth's last migration: on SQLite, altering auth_user rebuilds the table and
    # drops indexes Django's model state does not know, these ones included.
    dependencies = [
        ("accounts", "0003_user_types_in_the_apps_words"),
        ("auth", "0012_alter_user_first_name_max_length"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.RunPython(create_indexes, drop_indexes)]
