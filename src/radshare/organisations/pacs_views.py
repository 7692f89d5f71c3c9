"""Portal pages for organisation admins: the PACS nodes (docs/requirements.md S1.2), with a "test connection" button.

A node admits the PACS to radshare's storage SCP (calling AE title and host) and, with a port and/or a DICOMweb URL,
is searched and retrieved from. Every change and every test is audited; another organisation's node is a 404.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from radshare.audit.services import record, record_not_found
from radshare.organisations.models import Organisation, PacsNode
from radshare.organisations.views import org_admin_required


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


def _node(request: HttpRequest, organisation: Organisation, pk: int, action: str) -> PacsNode:
    node = PacsNode.objects.filter(organisation=organisation, pk=pk).first()
    if node is None:
        record_not_found(action, request, organisation, pk)
        raise Http404(_("PACS node not found"))
    return node


def _audit(
    request: HttpRequest, organisation: Organisation, action: str, node: PacsNode, **detail: Any
) -> None:
    record(
        action,
        request=request,
        organisation=organisation,
        detail={"node": node.pk, "ae_title": node.ae_title, **detail},
    )


@require_http_methods(["GET", "HEAD", "POST"])
@org_admin_required
def pacs_nodes(request: HttpRequest, organisation: Organisation) -> HttpResponse:
    form = PacsNodeForm(request.POST or None, organisation=organisation)
    if request.method == "POST" and form.is_valid():
        node = form.save()
        _audit(request, organisation, "portal.pacsnode.create", node)
        messages.success(request, _("The PACS node has been added."))
        return redirect("organisations:pacs_nodes")
    nodes = PacsNode.objects.filter(organisation=organisation)
    return render(
        request,
        "organisations/pacs_nodes.html",
        {"form": form, "nodes": nodes, "organisation": organisation},
        status=422 if form.errors else 200,
    )


@require_http_methods(["GET", "HEAD", "POST"])
@org_admin_required
def pacs_node_edit(request: HttpRequest, organisation: Organisation, pk: int) -> HttpResponse:
    node = _node(request, organisation, pk, "portal.pacsnode.edit")
    form = PacsNodeForm(request.POST or None, instance=node, organisation=organisation)
    if request.method == "POST" and form.is_valid():
        form.save()
        _audit(request, organisation, "portal.pacsnode.edit", node, fields=sorted(form.changed_data))
        messages.success(request, _("The PACS node has been saved."))
        return redirect("organisations:pacs_nodes")
    return render(
        request,
        "organisations/pacs_node_edit.html",
        {"form": form, "node": node, "organisation": organisation},
        status=422 if form.errors else 200,
    )


@require_http_methods(["GET", "HEAD", "POST"])
@org_admin_required
def pacs_node_delete(request: HttpRequest, organisation: Organisation, pk: int) -> HttpResponse:
    node = _node(request, organisation, pk, "portal.pacsnode.delete")
    if request.method == "POST":
        _audit(request, organisation, "portal.pacsnode.delete", node)
        node.delete()
        messages.success(request, _("The PACS node has been removed."))
        return redirect("organisations:pacs_nodes")
    return render(
        request, "organisations/pacs_node_delete.html", {"node": node, "organisation": organisation}
    )


@require_POST
@org_admin_required
def pacs_node_test(request: HttpRequest, organisation: Organisation, pk: int) -> HttpResponse:
    from radshare.pacs.client import PacsError, echo  # late import: the DICOM stack loads only when used

    node = _node(request, organisation, pk, "portal.pacsnode.test")
    try:
        result = echo(node)
    except PacsError as exc:
        _audit(request, organisation, "portal.pacsnode.test", node, result="failed", reason=exc.reason)
        messages.error(
            request,
            _("Connection to %(node)s failed: %(reason)s") % {"node": node.ae_title, "reason": exc.reason},
        )
    else:
        _audit(request, organisation, "portal.pacsnode.test", node, result="ok")
        messages.success(
            request, _("Connection to %(node)s works: %(result)s") % {"node": node.ae_title, "result": result}
        )
    return redirect("organisations:pacs_nodes")
