from __future__ import annotations

from django import forms

from routing.models import Model

from .models import Classification, Enforcement


class IssueKeyForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="The approved use case.")
    purpose = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    system_prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}))
    models = forms.ModelMultipleChoiceField(queryset=Model.objects.select_related("backend"), to_field_name="name")
    classification = forms.ChoiceField(choices=Classification.choices)
    rpm = forms.IntegerField(min_value=1, required=False, label="Requests per minute")
    tpm = forms.IntegerField(min_value=1, required=False, label="Tokens per minute")
    max_tokens = forms.IntegerField(
        min_value=1, required=False, label="max_tokens ceiling", help_text="Larger requests are clamped to it."
    )
    max_messages = forms.IntegerField(min_value=1, required=False, label="Max messages per request")
    max_prompt_tokens = forms.IntegerField(min_value=1, required=False, label="Max prompt tokens per request")
    budget = forms.DecimalField(
        min_value=0, max_digits=12, decimal_places=2, required=False, label="Budget (USD per team budget period)"
    )
    enforcement = forms.ChoiceField(
        choices=Enforcement.choices,
        initial=Enforcement.ENFORCE,
        help_text="Monitor: DLP blocks and limit breaches are recorded and alerted, but requests go through.",
    )
    tools = forms.CharField(
        required=False,
        max_length=4000,
        help_text="Tool names or globs, comma-separated, e.g. crm__lookup_customer, docs__* (MCP tools are "
        "server__tool). Empty: no MCP tools; the key may declare its own function tools in /v1.",
    )
    expires_at = forms.DateTimeField(required=False, help_text="YYYY-MM-DD HH:MM, server time zone.")
    requested_by = forms.CharField(max_length=200, required=False)
