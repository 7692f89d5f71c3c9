"""The recipient's pages in the share's language (docs/requirements.md S4.10): the one the sender chose for the e-mail
and the letter, once the code has been exchanged for a session. Before that, the browser's language, as Django's
LocaleMiddleware chose it. A language picked with the language switch (its cookie) always stands."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.http import HttpRequest
from django.utils import translation
from django.utils.deprecation import MiddlewareMixin

from radshare.recipients import session


class ShareLanguageMiddleware(MiddlewareMixin):
    """After SessionMiddleware and LocaleMiddleware (which sets Content-Language from the language active here)."""

    def process_request(self, request: HttpRequest) -> None:
        languages = dict(settings.LANGUAGES)
        if request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME) in languages:
            return  # the person's own choice
        if SESSION_KEY in request.session:
            return  # a sender's session (a recipient state may linger in it: docs/architecture.md "Sessions")
        language = session.language(request)
        if language in languages:
            translation.activate(language)
            request.LANGUAGE_CODE = language
