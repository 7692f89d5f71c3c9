# DownloadDay and DownloadGrant move here from the recipients app. Their tables stay as they are
# (recipients_downloadday, recipients_downloadgrant): this migration changes Django's state only, no SQL.

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("recipients", "0002_download_grant"),
        ("shares", "0004_pacs_retrieve"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="DownloadDay",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("day", models.DateField()),
                        ("count", models.PositiveIntegerField(default=0)),
                        (
                            "share",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to="shares.share",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "recipients_downloadday",
                        "constraints": [
                            models.UniqueConstraint(fields=("share", "day"), name="downloadday_unique")
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="DownloadGrant",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("session_hash", models.CharField(max_length=64)),
                        ("etag", models.CharField(max_length=100)),
                        ("day", models.DateField()),
                        ("budget", models.BigIntegerField()),
                        ("drawn", models.BigIntegerField(default=0)),
                        (
                            "created_at",
                            models.DateTimeField(db_index=True, default=django.utils.timezone.now),
                        ),
                        (
                            "share",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to="shares.share",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "recipients_downloadgrant",
                        "indexes": [
                            models.Index(fields=["share", "session_hash", "etag", "day"], name="grant_lookup")
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
