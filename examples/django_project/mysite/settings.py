"""Settings of the example project: no database, no installed apps, no templates.

Development values; set DJANGO_SECRET_KEY and DJANGO_DEBUG=0 for anything real.
"""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS: list[str] = []
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"
DATABASES: dict[str, dict[str, str]] = {}
TEMPLATES: list[dict[str, object]] = []

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
