"""Portal pages for organisation admins: the PACS nodes (docs/requirements.md S1.2), with a "test connection" button.

A node admits the PACS to radshare's storage SCP (calling AE title and host) and, with a port and/or a DICOMweb URL,
is searched and retrieved from. Every change and every test is audited; another organisation's node is a 404.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from radshare.audit.actions import Action
from radshare.audit.services import record, record_not_found
from radshare.organisations.models import Organisation, PacsNode
from radshare.organisations.views import org_admin_required
from radshare.pacs.client import PacsError, echo
from radshare.pacs.forms import PacsNodeForm


def _node(request: HttpRequest, organisation: Organisation, pk: int, action: Action) -> PacsNode:
    node = PacsNode.objects.filter(organisation=organisation, pk=pk).first()
    if node is None:
        record_not_found(action, request, organisation, pk)
        raise Http404(_("PACS node not found"))
    return node


def _audit(
    request: HttpRequest, organisation: Organisation, action: Action, node: PacsNode, **detail: Any
) -> None:
    record(
        action,
        request=request,
        organisation=organisation,
        detail={"node": node.pk, "ae_title": node.ae_title, **detail},
    )


@require_http_methods(["GET", "HEAD", "POST"])
@org_admin_required
def nodes(request: HttpRequest, organisation: Organisation) -> HttpResponse:
    form = PacsNodeForm(request.POST or None, organisation=organisation)
    if request.method == "POST" and form.is_valid():
        node = form.save()
        _audit(request, organisation, Action.PORTAL_PACSNODE_CREATE, node)
        messages.success(request, _("The PACS node has been added."))
        return redirect("pacs:nodes")
    nodes = PacsNode.objects.filter(organisation=organisation)
    return render(
        request,
        "pacs/nodes.html",
        {"form": form, "nodes": nodes, "organisation": organisation},
        status=422 if form.errors else 200,
    )


@require_http_methods(["GET", "HEAD", "POST"])
@org_admin_required
def node_edit(request: HttpRequest, organisation: Organisation, pk: int) -> HttpResponse:
    node = _node(request, organisation, pk, Action.PORTAL_PACSNODE_EDIT)
    form = PacsNodeForm(request.POST or None, instance=node, organisation=organisation)
    if request.method == "POST" and form.is_valid():
        form.save()
        _audit(request, organisation, Action.PORTAL_PACSNODE_EDIT, node, fields=sorted(form.changed_data))
        messages.success(request, _("The PACS node has been saved."))
        return redirect("pacs:nodes")
    return render(
        request,
        "pacs/node_edit.html",
        {"form": form, "node": node, "organisation": organisation},
        status=422 if form.errors else 200,
    )


@require_http_methods(["GET", "HEAD", "POST"])
@org_admin_required
def node_delete(request: HttpRequest, organisation: Organisation, pk: int) -> HttpResponse:
    node = _node(request, organisation, pk, Action.PORTAL_PACSNODE_DELETE)
    if request.method == "POST":
        _audit(request, organisation, Action.PORTAL_PACSNODE_DELETE, node)
        node.delete()
        messages.success(request, _("The PACS node has been removed."))
        return redirect("pacs:nodes")
    return render(request, "pacs/node_delete.html", {"node": node, "organisation": organisation})


@require_POST
@org_admin_required
def node_test(request: HttpRequest, organisation: Organisation, pk: int) -> HttpResponse:
    node = _node(request, organisation, pk, Action.PORTAL_PACSNODE_TEST)
    try:
        result = echo(node)
    except PacsError as exc:
        _audit(
            request,
            organisation,
            Action.PORTAL_PACSNODE_TEST,
            node,
            result="failed",
            code=exc.code,
            reason=exc.reason,
        )
        messages.error(
            request,
            _("Connection to %(node)s failed: %(reason)s") % {"node": node.ae_title, "reason": exc.message},
        )
    else:
        _audit(request, organisation, Action.PORTAL_PACSNODE_TEST, node, result="ok")
        messages.success(
            request, _("Connection to %(node)s works: %(result)s") % {"node": node.ae_title, "result": result}
        )
    return redirect("pacs:nodes")
