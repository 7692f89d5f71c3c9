"""ASGI entry point (uvicorn runs ``radshare.asgi:application``).

Django's application sits behind ``BodyLimit``, which refuses a request body past its limit before Django reads
it into a temporary file (``core/middleware.py``)."""

import os

from django.core.asgi import get_asgi_application

from radshare.core.middleware import BodyLimit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "radshare.settings")
application = BodyLimit(get_asgi_application())
