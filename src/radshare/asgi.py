"""ASGI entry point (uvicorn runs ``radshare.asgi:application``).

Django's application sits behind ``BodyLimit``, which refuses a request body past its limit before Django reads
it into a temporary file (``core/middleware.py``). The handler is Django's with larger messages
(``core/streaming.py``), as ``get_asgi_application`` would make it otherwise."""

import os

import django

from radshare.core.middleware import BodyLimit
from radshare.core.streaming import LargeMessageASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "radshare.settings")
django.setup(set_prefix=False)
application = BodyLimit(LargeMessageASGIHandler())
