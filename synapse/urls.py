from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import path, re_path
from django.views.static import serve

from . import mcp, views

# The console's name on every page; no "View site" link: the gateway has no site to view
# (its root is the API, which answers JSON).
admin.site.site_header = "Synapse governance console"
admin.site.site_title = "Synapse governance console"
admin.site.index_title = "Governance"
admin.site.site_url = None

urlpatterns = [
    path("v1/chat/completions", views.ChatCompletionsView.as_view()),
    path("v1/embeddings", views.EmbeddingsView.as_view()),
    path("v1/models", views.ModelsView.as_view()),
    path("v1/responses", views.ResponsesView.as_view()),
    path("v1/messages", views.MessagesView.as_view()),
    path("v1/messages/count_tokens", views.CountTokensView.as_view()),
    re_path(r"^v1(?:/(?P<rest>.*))?$", views.v1_not_found),
    path("mcp", mcp.mcp_endpoint),
    path("admin/", admin.site.urls),
    # The admin's own CSS/JS. A handful of approvers use the console, so Django serving these
    # files is fine and spares every /v1 request a static-files middleware.
    re_path(r"^static/(?P<path>.*)$", serve, {"document_root": settings.STATIC_ROOT}),
]

handler404 = "synapse.errors_views.not_found"
handler500 = "synapse.errors_views.server_error"
handler403 = "synapse.errors_views.permission_denied"
