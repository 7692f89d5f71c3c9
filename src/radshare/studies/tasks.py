"""The studies app's periodic work: what each organisation's studies hold, once an hour, for the usage report
(core/usage.py; docs/operations.md "Usage per organisation")."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Sum
from django.tasks import task

from radshare.core.tasks import Periodic
from radshare.core.usage import Usage, gauge
from radshare.organisations.models import Organisation
from radshare.studies.models import Study


@task()
def record_storage_held() -> int:
    """Today's storage held per organisation (the sum of its studies' sizes as received); how many organisations."""
    held = dict(
        Study.objects.values("organisation_id")
        .annotate(total=Sum("size"))
        .values_list("organisation_id", "total")
    )
    organisations = list(Organisation.objects.values_list("pk", flat=True))
    for pk in organisations:
        gauge(Usage.STORAGE_BYTES, int(held.get(pk) or 0), organisation=pk)
    return len(organisations)


PERIODIC = (Periodic("studies.storage_held", timedelta(hours=1), record_storage_held),)
