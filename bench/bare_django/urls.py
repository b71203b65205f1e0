from __future__ import annotations

from django.urls import path

from .views import chat

urlpatterns = [path("v1/chat/completions", chat)]
