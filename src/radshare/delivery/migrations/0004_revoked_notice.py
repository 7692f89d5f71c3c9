# The sender's notice that a correction from the PACS revoked their share (docs/architecture.md "Corrections from
# the PACS"): one more kind; the column is unchanged.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0003_login_locked_notice"),
    ]

    operations = [
        migrations.AlterField(
            model_name="notification",
            name="kind",
            field=models.CharField(
                choices=[
                    ("share_link", "link to the recipient"),
                    ("sms_code", "SMS code to the recipient"),
                    ("opened", "share opened (to the sender)"),
                    ("locked", "share locked (to the sender)"),
                    ("login_locked", "login blocked (to the sender)"),
                    ("revoked", "share revoked after a correction (to the sender)"),
                ],
                max_length=16,
            ),
        ),
    ]
