"""The hash chain (docs/security.md A17): entries already written are linked in the order they were written, one
chain per organisation (and one for the entries of no organisation), with the hash that ``audit.chain`` computes."""

from django.db import migrations, models
from django.db.models import Q

from radshare.audit.chain import chain_key, entry_hash
from radshare.audit.models import GENESIS

BATCH = 2000


def link_existing(apps, schema_editor):
    AuditEvent = apps.get_model("audit", "AuditEvent")
    AuditChainHead = apps.get_model("audit", "AuditChainHead")
    heads = {}  # chain -> (seq, hash) of its newest entry so far
    after = None
    while True:
        # Pages by (timestamp, id), not one open cursor: the rows read are updated meanwhile.
        page = AuditEvent.objects.order_by("timestamp", "pk")
        if after is not None:
            page = page.filter(Q(timestamp__gt=after[0]) | Q(timestamp=after[0], pk__gt=after[1]))
        events = list(page[:BATCH])
        if not events:
            break
        for event in events:
            event.chain = chain_key(event.organisation_id)
            seq, prev = heads.get(event.chain, (0, GENESIS))
            event.seq, event.prev_hash = seq + 1, prev
            event.entry_hash = entry_hash(event)
            heads[event.chain] = (event.seq, event.entry_hash)
        AuditEvent.objects.bulk_update(events, ["chain", "seq", "prev_hash", "entry_hash"])
        after = (events[-1].timestamp, events[-1].pk)
    AuditChainHead.objects.bulk_create(
        AuditChainHead(chain=chain, seq=seq, entry_hash=digest) for chain, (seq, digest) in heads.items()
    )


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0002_choice_labels"),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditChainHead",
            fields=[
                ("chain", models.CharField(max_length=32, primary_key=True, serialize=False)),
                ("seq", models.BigIntegerField(default=0)),
                ("entry_hash", models.CharField(default=GENESIS, max_length=64)),
            ],
        ),
        migrations.CreateModel(
            name="AuditCheckpoint",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("chain", models.CharField(max_length=32)),
                ("seq", models.BigIntegerField()),
                ("entry_hash", models.CharField(max_length=64)),
                ("created_at", models.DateTimeField()),
                ("key_id", models.CharField(max_length=16)),
                ("signature", models.CharField(max_length=64)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("chain", "seq"), name="audit_checkpoint_chain_seq")
                ],
            },
        ),
        migrations.AddField(
            model_name="auditevent",
            name="chain",
            field=models.CharField(default="", editable=False, max_length=32),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="seq",
            field=models.BigIntegerField(default=0, editable=False),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="prev_hash",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="entry_hash",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(link_existing, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="auditevent",
            constraint=models.UniqueConstraint(fields=("chain", "seq"), name="audit_chain_seq"),
        ),
    ]
