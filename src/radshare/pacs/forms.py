"""The PACS node form of the portal (docs/requirements.md S1.2)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy

from radshare.organisations.models import Organisation, PacsNode


class PacsNodeForm(forms.ModelForm[PacsNode]):
    dicomweb_secret_new = forms.CharField(
        label=gettext_lazy("DICOMweb password or token"),
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=gettext_lazy("Leave empty to keep the one stored."),
    )

    class Meta:
        model = PacsNode
        fields = [
            "ae_title",
            "host",
            "port",
            "description",
            "queried",
            "retrieve",
            "dicomweb_url",
            "dicomweb_auth",
            "dicomweb_username",
            "is_active",
        ]
        help_texts = {
            "host": gettext_lazy(
                "IP address of the PACS: it connects from there, and radshare queries it there."
            ),
            "port": gettext_lazy("Its DICOM port, for searching (C-FIND) and retrieving (C-MOVE or C-GET)."),
            "retrieve": gettext_lazy(
                "C-MOVE sends the images to radshare's own AE title: register radshare in the PACS first."
            ),
        }

    def __init__(self, *args: Any, organisation: Organisation, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instance.organisation = organisation
        if not self.instance.dicomweb_secret:
            # Nothing is stored to keep (a new node, or one without a password or token).
            self.fields["dicomweb_secret_new"].help_text = gettext_lazy(
                "Only for basic or bearer token authentication."
            )

    def save(self, commit: bool = True) -> PacsNode:
        node: PacsNode = super().save(commit=False)
        secret = self.cleaned_data.get("dicomweb_secret_new") or ""
        if secret:
            node.set_dicomweb_secret(secret)
        if node.dicomweb_auth == "none":
            node.dicomweb_secret = ""
        if commit:
            node.save()
        return node
