# DownloadDay and DownloadGrant now belong to the downloads app (downloads.0001_initial), which keeps their tables:
# they leave the recipients app's state only, no SQL.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("recipients", "0002_download_grant"),
        ("downloads", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="DownloadDay"),
                migrations.DeleteModel(name="DownloadGrant"),
            ],
            database_operations=[],
        ),
    ]
