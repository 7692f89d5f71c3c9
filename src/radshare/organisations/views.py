"""Portal pages: a sender's own account; for organisation admins, the organisation's API keys (docs/security.md
A11)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from radshare.audit.actions import Action
from radshare.audit.services import record, record_not_found
from radshare.organisations.auth import sender_required
from radshare.organisations.forms import AccountForm, ApiKeyCreateForm
from radshare.organisations.models import ApiKey, Organisation, Sender
from radshare.organisations.services import create_api_key, revoke_api_key, set_own_email

# A new key waits here (in the server-side session) for the one page that shows it, and is removed as it is shown.
NEW_KEY_SESSION = "radshare_new_api_key"


def _sender(request: HttpRequest) -> Sender:
    assert isinstance(request.user, Sender)  # noqa: S101 - sender_required guarantees it
    return request.user


def org_admin_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Staff of an active organisation (``sender_required``) who are its admin; other senders get 403."""

    @sender_required
    @wraps(view)
    def wrapper(
        request: HttpRequest, organisation: Organisation, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        if not _sender(request).is_org_admin:
            raise PermissionDenied
        return view(request, organisation, *args, **kwargs)

    return wrapper


@require_http_methods(["GET", "HEAD", "POST"])
@sender_required
def account(request: HttpRequest, organisation: Organisation) -> HttpResponse:
    """A sender's own account: the e-mail address their notices go to."""
    sender = _sender(request)
    form = AccountForm(request.POST or None, initial={"email": sender.email}, request=request, sender=sender)
    if request.method == "POST" and form.is_valid():
        try:
            changed = set_own_email(sender, form.cleaned_data["email"], request)
        except ValidationError as exc:
            form.add_error("email", exc)
        else:
            if changed:
                messages.success(request, _("Your e-mail address has been saved."))
            return redirect("organisations:account")
    return render(
        request,
        "organisations/account.html",
        {"form": form, "organisation": organisation, "sender": sender},
        status=422 if form.errors else 200,
    )


@require_http_methods(["GET", "HEAD", "POST"])
@org_admin_required
def api_keys(request: HttpRequest, organisation: Organisation) -> HttpResponse:
    form = ApiKeyCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        key, plaintext = create_api_key(organisation, form.cleaned_data["name"], created_by=_sender(request))
        record(
            Action.PORTAL_APIKEY_CREATE,
            request=request,
            organisation=organisation,
            detail={"api_key_id": key.pk, "prefix": key.prefix, "name": key.name},
        )
        request.session[NEW_KEY_SESSION] = {"id": key.pk, "key": plaintext}
        return redirect("organisations:api_keys")  # POST-redirect-GET: a reload does not create or show again
    new_key = request.session.pop(NEW_KEY_SESSION, None)
    return render(
        request,
        "organisations/api_keys.html",
        {
            "form": form,
            "organisation": organisation,
            "keys": ApiKey.objects.filter(organisation=organisation).select_related(
                "created_by", "revoked_by"
            ),
            "new_key": new_key,
        },
    )


@require_http_methods(["GET", "HEAD", "POST"])
@org_admin_required
def api_key_revoke(request: HttpRequest, organisation: Organisation, pk: int) -> HttpResponse:
    try:
        key = ApiKey.objects.get(organisation=organisation, pk=pk)
    except ApiKey.DoesNotExist:
        record_not_found(Action.PORTAL_APIKEY_REVOKE, request, organisation, pk)
        raise Http404(_("API key not found")) from None
    if request.method == "POST" and not key.is_revoked:
        revoke_api_key(organisation, key.pk, _sender(request))
        record(
            Action.PORTAL_APIKEY_REVOKE,
            request=request,
            organisation=organisation,
            detail={"api_key_id": key.pk, "prefix": key.prefix, "name": key.name},
        )
        messages.success(request, _("API key %(prefix)s is revoked.") % {"prefix": key.prefix})
        return redirect("organisations:api_keys")
    if request.method == "POST" or key.is_revoked:
        return redirect("organisations:api_keys")
    return render(request, "organisations/api_key_revoke.html", {"organisation": organisation, "key": key})
