"""user_type is stored in the shipped app's words (inquilino, propietario, agente)
instead of this server's earlier English ones."""

from django.db import migrations, models

ENGLISH_TO_APP = {"tenant": "inquilino", "owner": "propietario", "agent": "agente"}


def _rename(apps, mapping):
    Profile = apps.get_model("accounts", "Profile")
    for old, new in mapping.items():
        Profile.objects.filter(user_type=old).update(user_type=new)


def to_app_words(apps, schema_editor):
    _rename(apps, ENGLISH_TO_APP)


def to_english(apps, schema_editor):
    _rename(apps, {new: old for old, new in ENGLISH_TO_APP.items()})


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_profiles_for_existing_users")]

    operations = [
        migrations.AlterField(
            model_name="profile",
            name="user_type",
            field=models.CharField(
                choices=[("inquilino", "Tenant"), ("propietario", "Owner"), ("agente", "Agent")],
                default="inquilino",
                max_length=16,
            ),
        ),
        migrations.RunPython(to_app_words, to_english),
    ]
