"""Sender portal, first part: login and the study browser. Every query is scoped to the sender's organisation."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_safe

from radshare.audit.services import Outcome, record
from radshare.organisations.forms import SenderLoginForm
from radshare.organisations.models import Organisation, Sender
from radshare.studies.forms import StudySearchForm
from radshare.studies.models import Study
from radshare.studies.services import StudySearch, get_study, search_studies

PAGE_SIZE = 50


def sender_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Logged in, and staff of an active organisation (operators without one use /admin/)."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = request.user
        assert isinstance(user, Sender)  # noqa: S101 - login_required guarantees it
        if user.organisation is None or not user.organisation.is_active:
            raise PermissionDenied
        return view(request, user.organisation, *args, **kwargs)  # scoped from here on

    return wrapper


class LoginView(auth_views.LoginView):
    template_name = "studies/login.html"
    authentication_form = SenderLoginForm
    redirect_authenticated_user = True


@require_safe
@sender_required
def study_list(request: HttpRequest, organisation: Organisation) -> HttpResponse:
    form = StudySearchForm(request.GET or None)
    page = None
    if not form.is_bound or form.is_valid():
        criteria = form.criteria() if form.is_bound else StudySearch()
        page = Paginator(search_studies(organisation, criteria), PAGE_SIZE).get_page(request.GET.get("page"))
        shown: list[Study] = list(page.object_list)
        record(
            "portal.studies.list",
            request=request,
            organisation=organisation,
            study_uids=[s.study_instance_uid for s in shown],
            detail={
                "count": page.paginator.count,
                "page": page.number,
                "criteria": sorted(k for k in form.fields if request.GET.get(k)),
            },
        )
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "studies/study_list.html",
        {
            "form": form,
            "page": page,
            "query": query.urlencode(),
            "organisation": organisation,
        },
    )


@require_safe
@sender_required
def study_detail(request: HttpRequest, organisation: Organisation, pk: int) -> HttpResponse:
    try:
        study = get_study(organisation, pk)
    except Study.DoesNotExist:
        # Another organisation's study and a missing one are refused alike; both are recorded (intrusion signal).
        record(
            "portal.study.view",
            outcome=Outcome.DENIED,
            request=request,
            organisation=organisation,
            detail={"requested_id": pk, "reason": "not found in the organisation"},
        )
        raise Http404(_("Study not found")) from None
    record(
        "portal.study.view",
        request=request,
        organisation=organisation,
        patient=study.patient,
        study_uids=[study.study_instance_uid],
    )
    return render(
        request,
        "studies/study_detail.html",
        {
            "study": study,
            "patient": study.patient,
            "series_list": study.series.all(),
            "organisation": organisation,
        },
    )
