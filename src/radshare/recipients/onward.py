"""The patient passes their share on to a care provider, and ends what they passed on (docs/architecture.md "Onward
shares"). The rules are in ``shares/onward.py``; these views check input and show the outcome. A share that may
not be passed on gets a 404 (the action is absent: another organisation's setting, a care provider, an onward share),
a share at the limit a 403 with the reason; neither stores anything but the refusal's audit entry.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from radshare.recipients.services import share_studies
from radshare.recipients.session import recipient_required
from radshare.shares import onward
from radshare.shares.models import Share
from radshare.shares.phones import OUTSIDE_EU, PhoneError, normalize_phone
from radshare.shares.services import ShareError
from radshare.studies.models import Study


class PassOnForm(forms.Form):
    name = forms.CharField(
        label=gettext_lazy("Your name"),
        max_length=Share.NAME_MAX_LENGTH,
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
        help_text=gettext_lazy(
            "The care provider sees this name in the e-mail, so they know who sends the images."
        ),
        error_messages={"required": gettext_lazy("Enter your name.")},
    )
    email = forms.EmailField(
        label=gettext_lazy("E-mail address of the care provider"),
        widget=forms.EmailInput(attrs={"autocomplete": "off"}),
        help_text=gettext_lazy("The link to the images is sent there."),
        error_messages={
            "required": gettext_lazy("Enter the care provider's e-mail address."),
            "invalid": gettext_lazy("Enter a valid e-mail address."),
        },
    )
    phone = forms.CharField(
        label=gettext_lazy("Mobile number of the care provider"),
        max_length=30,
        widget=forms.TextInput(attrs={"inputmode": "tel", "autocomplete": "off"}),
        help_text=gettext_lazy(
            "A login code is sent there by SMS. A number abroad starts with its country code."
        ),
        error_messages={"required": gettext_lazy("Enter the care provider's mobile number.")},
    )
    studies = forms.TypedMultipleChoiceField(
        label=gettext_lazy("Which studies"),
        coerce=int,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": gettext_lazy("Select at least one study.")},
    )
    note = forms.CharField(
        label=gettext_lazy("Your note to the care provider (optional)"),
        max_length=500,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=gettext_lazy("The care provider reads it after logging in. At most 500 characters."),
    )
    consent = forms.BooleanField(
        label=gettext_lazy("I choose to share these images with this care provider."),
        error_messages={"required": gettext_lazy("Confirm that you choose to share these images.")},
    )

    def clean_phone(self) -> str:
        """A number that may not receive an SMS is refused here: the provider could not log in, and no sender
        is there to confirm it as in the share dialog. A number outside the EU is the patient's choice."""
        raw: str = self.cleaned_data["phone"]
        try:
            number = normalize_phone(raw)
        except PhoneError as exc:
            raise forms.ValidationError(str(exc.message)) from None
        if number.warning and number.warning != OUTSIDE_EU:
            raise forms.ValidationError(str(number.warning))
        return raw

    def __init__(self, studies: list[Study], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["studies"]
        if isinstance(field, forms.TypedMultipleChoiceField):  # as declared above
            field.choices = [(s.pk, _study_label(s)) for s in studies]
        if len(studies) == 1 and not self.is_bound:
            self.initial["studies"] = [studies[0].pk]


NONE = "\u2013"  # an en dash for a missing value, as the templates show it


def _study_label(study: Study) -> str:
    described = study.study_description or _("Study")
    when = study.study_date.strftime("%d-%m-%Y") if study.study_date else NONE
    return f"{described} ({', '.join(study.modalities or []) or NONE}, {when})"


FIELDS = {"name", "email", "phone", "studies", "note", "consent"}


def _refuse_absent(request: HttpRequest, share: Share) -> onward.Refused | None:
    """404 when the action is absent for this share (audited when something was submitted)."""
    why = onward.refusal(share)
    if why is not None and why != onward.Refused.LIMIT:
        if request.method == "POST":
            onward.record_refusal(request, share, why)
        raise Http404
    return why


@require_http_methods(["GET", "POST"])
@recipient_required
def pass_on(request: HttpRequest, share: Share) -> HttpResponse:
    why = _refuse_absent(request, share)
    context: dict[str, Any] = {"share": share, "organisation": share.organisation, "logged_in": True}
    if why == onward.Refused.LIMIT:
        if request.method == "POST":
            onward.record_refusal(request, share, why)
        return render(
            request, "recipients/onward_limit.html", {**context, "limit": Share.ONWARD_MAX}, status=403
        )
    form = PassOnForm(share_studies(share), request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            onward.pass_on(
                request,
                share,
                study_ids=data["studies"],
                email=data["email"],
                phone=data["phone"],
                name=data["name"],
                note=data["note"],
                consent=data["consent"],
                language=translation.get_language() or share.language,
            )
        except onward.RefusedError:
            raise Http404 from None
        except ShareError as exc:
            form.add_error(exc.field if exc.field in FIELDS else None, str(exc.message))
        else:
            messages.success(
                request,
                _(
                    "The images are passed on. The care provider receives an e-mail with the link once they are "
                    "ready. Give the care provider your date of birth: they must type it to open the images."
                ),
            )
            return redirect("recipients:studies")
    status = 422 if form.errors else 200
    return render(request, "recipients/onward_new.html", {**context, "form": form}, status=status)


@require_http_methods(["GET", "POST"])
@recipient_required
def end(request: HttpRequest, share: Share, pk: int) -> HttpResponse:
    """Confirm, then end one onward share of this share at once (POST, CSRF)."""
    if request.method == "POST":
        if onward.end(request, share, pk) is None:  # not an onward share of this share
            raise Http404
        messages.success(request, _("The care provider's link no longer works."))
        return redirect("recipients:studies")
    target = Share.objects.filter(parent=share, pk=pk).first()
    if target is None:
        raise Http404
    if target.has_ended:
        return redirect("recipients:studies")
    return render(
        request,
        "recipients/onward_end.html",
        {"share": share, "organisation": share.organisation, "logged_in": True, "onward": target},
    )
