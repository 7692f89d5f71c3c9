"""ASGI entry point (uvicorn runs ``radshare.asgi:application``)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "radshare.settings")
application = get_asgi_application()
