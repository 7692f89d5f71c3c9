"""The pages of the second login step (docs/security.md A9): entering a code, setting up an authenticator app,
recovery codes; and, for organisation admins, their senders with a reset of the second step and the log
administrator role (who reads the audit trail, docs/security.md A19).

The step's pages serve the portal under /portal/ and the operator admin under /admin/ (``admin_site.py``), so
that each site's attempts are counted and audited as its own (``services.login_site``).
"""

from __future__ import annotations

from urllib.parse import quote

from django.conf import settings
from django.contrib import messages
from django.db.models import Exists, OuterRef
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.shortcuts import redirect, render, resolve_url
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django_otp.plugins.otp_totp.models import TOTPDevice

from radshare.audit.actions import Action
from radshare.audit.services import record_not_found
from radshare.organisations import two_factor
from radshare.organisations.auth import site_url
from radshare.organisations.forms import THROTTLED, EnrolmentCodeForm, SecondFactorForm
from radshare.organisations.models import Organisation, Sender
from radshare.organisations.services import login_site, remember_device, set_log_admin
from radshare.organisations.views import org_admin_required

# New recovery codes wait here (in the server-side session) for the one page that shows them, and are removed as
# they are shown, as new API keys are.
NEW_CODES_SESSION = "radshare_new_recovery_codes"
WRONG_CODE = gettext_lazy("This code is not right, or it was used already. Type the code your app shows now.")


def _next(request: HttpRequest) -> str:
    """Where to go once the step is passed: ``next`` when it stays on this site, else the site's start page."""
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return (
        site_url(request, "index")
        if login_site(request) == "admin"
        else resolve_url(settings.LOGIN_REDIRECT_URL)
    )


def _with_next(request: HttpRequest, name: str) -> str:
    return f"{site_url(request, name)}?next={quote(_next(request))}"


def _sender(request: HttpRequest) -> Sender | None:
    user = request.user
    return user if isinstance(user, Sender) and user.is_authenticated else None


def _context(request: HttpRequest, **extra: object) -> dict[str, object]:
    # Logging out goes through the portal's logout on both sites: the admin's own logout is behind its permission
    # check, which a session that owes its second step does not pass. It comes back to the site's login page.
    login = "admin:login" if login_site(request) == "admin" else settings.LOGIN_URL
    return {"next": _next(request), "logout_next": resolve_url(login), **extra}


def _passed(request: HttpRequest, user: Sender, response: HttpResponse) -> HttpResponse:
    if login_site(request) == "portal":
        # Only now is this browser a known device of the account (docs/security.md A26).
        remember_device(request, response, user)
    return response


def _login_first(request: HttpRequest) -> HttpResponse:
    login = "admin:login" if login_site(request) == "admin" else settings.LOGIN_URL
    return HttpResponseRedirect(f"{resolve_url(login)}?next={quote(_next(request))}")


@require_http_methods(["GET", "HEAD", "POST"])
def verify(request: HttpRequest) -> HttpResponse:
    """The second step: a code from the app, or a recovery code."""
    user = _sender(request)
    if user is None:
        return _login_first(request)
    if not two_factor.pending(request):
        return redirect(_next(request))
    if not two_factor.has_authenticator(user):
        return redirect(_with_next(request, "two_factor_setup"))
    form = SecondFactorForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        verdict = two_factor.verify(request, user, form.cleaned_data["code"])
        if verdict.passed:
            if verdict == two_factor.Verdict.RECOVERY:
                left = two_factor.recovery_codes_left(user)
                message = ngettext(
                    "You logged in with a recovery code; %(left)s is left. Lost your phone? Ask your "
                    "administrator to reset your two-step login.",
                    "You logged in with a recovery code; %(left)s are left. Lost your phone? Ask your "
                    "administrator to reset your two-step login.",
                    left,
                )
                messages.warning(request, message % {"left": left})
            return _passed(request, user, redirect(_next(request)))
        form.add_error("code", THROTTLED if verdict == two_factor.Verdict.THROTTLED else WRONG_CODE)
    return render(request, "organisations/two_factor_verify.html", _context(request, form=form))


@require_http_methods(["GET", "HEAD", "POST"])
def setup(request: HttpRequest) -> HttpResponse:
    """Setting up an authenticator app: for an account that must pass the step and has no app yet."""
    user = _sender(request)
    if user is None:
        return _login_first(request)
    if not two_factor.pending(request):
        return redirect(_next(request))
    if two_factor.has_authenticator(user):
        return redirect(_with_next(request, "two_factor"))
    device = two_factor.enrolment_device(user)
    form = EnrolmentCodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        verdict, codes = two_factor.confirm_enrolment(request, user, form.cleaned_data["code"])
        if verdict.passed:
            request.session[NEW_CODES_SESSION] = codes
            return _passed(request, user, redirect(_with_next(request, "two_factor_recovery_codes")))
        form.add_error("code", THROTTLED if verdict == two_factor.Verdict.THROTTLED else WRONG_CODE)
    context = _context(
        request, form=form, qr_code=two_factor.qr_code(device), secret=two_factor.secret_text(device)
    )
    return render(request, "organisations/two_factor_setup.html", context)


@require_http_methods(["GET", "HEAD", "POST"])
def recovery_codes(request: HttpRequest) -> HttpResponse:
    """New recovery codes, shown once; or how many are left, and making new ones (the old ones then end). A
    session that still owes its second step never gets here (``auth.SecondFactorMiddleware``)."""
    user = _sender(request)
    if user is None:
        return _login_first(request)
    if not two_factor.has_authenticator(user):
        return redirect(_next(request))
    if request.method == "POST":
        request.session[NEW_CODES_SESSION] = two_factor.new_recovery_codes(request, user)
        return redirect(_with_next(request, "two_factor_recovery_codes"))  # a reload makes no new codes
    codes = request.session.pop(NEW_CODES_SESSION, None)
    context = _context(request, codes=codes, left=two_factor.recovery_codes_left(user))
    if codes:
        context["download"] = "data:text/plain;charset=utf-8," + quote(
            "radshare " + user.get_username() + "\n\n" + "\n".join(codes) + "\n"
        )
    return render(request, "organisations/two_factor_recovery_codes.html", context)


# --- An organisation's senders (organisation admins) ------------------------------------------------------------


@require_safe
@org_admin_required
def senders(request: HttpRequest, organisation: Organisation) -> HttpResponse:
    """The organisation's senders and whether each has set up the second login step."""
    with_app = TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True)
    rows = (
        Sender.objects.filter(organisation=organisation, is_superuser=False)
        .annotate(has_authenticator=Exists(with_app))
        .order_by("username")
    )
    context = {"organisation": organisation, "senders": rows}
    return render(request, "organisations/two_factor_senders.html", context)


@require_http_methods(["GET", "HEAD", "POST"])
@org_admin_required
def sender_reset(request: HttpRequest, organisation: Organisation, pk: int) -> HttpResponse:
    """Reset a sender's second step, after a confirmation: they set up an authenticator app again."""
    try:
        target = Sender.objects.get(organisation=organisation, pk=pk, is_superuser=False)
    except Sender.DoesNotExist:
        record_not_found(Action.PORTAL_2FA_RESET, request, organisation, pk)
        raise Http404(_("Sender not found")) from None
    if request.method == "POST":
        two_factor.reset_by_admin(organisation, target.pk, request)
        messages.success(
            request,
            _("%(username)s sets up an authenticator app again at their next login.")
            % {"username": target.get_username()},
        )
        return redirect("organisations:senders")
    context = {"organisation": organisation, "target": target}
    return render(request, "organisations/two_factor_reset.html", context)


@require_POST
@org_admin_required
def sender_log_admin(request: HttpRequest, organisation: Organisation, pk: int) -> HttpResponse:
    """Give a sender the log administrator role (``on=1``), or take it away (``on=0``)."""
    on = request.POST.get("on")
    if on not in ("0", "1"):
        return HttpResponseBadRequest(_("Choose whether to give or take away the role."))
    try:
        target = set_log_admin(organisation, pk, on == "1", request)
    except Sender.DoesNotExist:
        record_not_found(Action.PORTAL_SENDER_LOG_ADMIN, request, organisation, pk)
        raise Http404(_("Sender not found")) from None
    if target.is_log_admin:
        text = _("%(username)s is now a log administrator: they can read and export the audit trail.")
    else:
        text = _("%(username)s is no longer a log administrator.")
    messages.success(request, text % {"username": target.get_username()})
    return redirect("organisations:senders")
