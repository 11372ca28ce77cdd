"""URLs of the example project."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("echo", views.echo),
    path("countdown", views.countdown),
    path("source", views.source),
]
