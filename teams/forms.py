from __future__ import annotations

from decimal import Decimal
from typing import Any
from zoneinfo import available_timezones

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone

from routing.models import Model

from .models import ApiKey, Classification, Enforcement, Team
from .periods import zone_named


class IssueKeyForm(forms.Form):
    required_css_class = "required"  # the admin's stylesheet marks these labels
    name = forms.CharField(max_length=200, help_text="The approved use case.")
    purpose = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    system_prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}))
    models = forms.ModelMultipleChoiceField(queryset=Model.objects.select_related("backend"), to_field_name="name")
    classification = forms.ChoiceField(choices=Classification.choices)
    rpm = forms.IntegerField(min_value=1, required=False, label="Requests per minute")
    tpm = forms.IntegerField(min_value=1, required=False, label="Tokens per minute")
    max_tokens = forms.IntegerField(
        min_value=1,
        required=False,
        label="Longest answer (tokens)",
        help_text="A request asking for a longer answer (max_tokens) is clamped to this.",
    )
    max_messages = forms.IntegerField(min_value=1, required=False, label="Max messages per request")
    max_prompt_tokens = forms.IntegerField(min_value=1, required=False, label="Max prompt tokens per request")
    max_concurrent = forms.IntegerField(
        min_value=1,
        max_value=1000,
        required=False,
        label="Max requests in flight",
        help_text="Requests of this key running at once, over all workers; more are refused with 429.",
    )
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
    expires_at = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        label="Expires at",
        help_text="Server time zone. Empty: no expiry.",
    )
    requested_by = forms.CharField(max_length=200, required=False)

    def __init__(self, *args: Any, team: Team | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.team = team

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if self.team is not None:
            now = timezone.now()
            taken = ApiKey.objects.filter(team=self.team, name__iexact=name, revoked_at__isnull=True).filter(
                Q(expires_at__isnull=True) | Q(expires_at__gt=now)
            )
            if taken.exists():
                raise ValidationError(
                    f"Team {self.team} already has an active key named '{name}'. Choose another name, "
                    "or revoke the old key first.",
                    code="duplicate",
                )
        return name


class RevokeKeyForm(forms.Form):
    required_css_class = "required"
    reason = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Recorded with the revocation in the audit trail, e.g. 'key leaked in a ticket'.",
    )


WEEKDAYS = [("1", "Mon"), ("2", "Tue"), ("3", "Wed"), ("4", "Thu"), ("5", "Fri"), ("6", "Sat"), ("7", "Sun")]


class BusinessDaysField(forms.MultipleChoiceField):
    """Weekdays as checkboxes, stored as the ISO digits the model keeps ("12345" = Mon–Fri)."""

    widget = forms.CheckboxSelectMultiple

    def __init__(self, **kwargs: Any) -> None:
        for unused in ("max_length", "empty_value"):
            kwargs.pop(unused, None)
        super().__init__(choices=WEEKDAYS, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        return list(value) if isinstance(value, str) else value

    def clean(self, value: Any) -> str:
        days = super().clean(value)
        if not days:
            raise ValidationError("Pick at least one business day.", code="required")
        return "".join(sorted(set(days)))


class TeamForm(forms.ModelForm):
    """The team page's form: every field is checked here, so a typo is a field error, not a 500."""

    business_days = BusinessDaysField(label="Business days")

    class Meta:
        model = Team
        fields = "__all__"
        labels = {"rpm": "Requests per minute", "tpm": "Tokens per minute", "budget": "Budget (USD)"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A declared field does not inherit the model default (Mon–Fri) as its initial value.
        self.fields["business_days"].initial = Team._meta.get_field("business_days").get_default()
        if "budget" in self.fields:
            self.fields["budget"].widget.attrs["min"] = "0"

    def clean_time_zone(self) -> str:
        name = (self.cleaned_data.get("time_zone") or "").strip()
        if name:
            try:
                zone_named(name)
            except ValidationError:
                hint = _zone_hint(name)
                raise ValidationError(
                    f"'{name}' is not a time zone name. Use an IANA name such as Europe/Berlin"
                    + (f" (did you mean {hint}?)" if hint else "")
                    + ".",
                    code="invalid",
                ) from None
        return name

    def clean_budget(self) -> Decimal | None:
        budget = self.cleaned_data.get("budget")
        if budget is not None and budget < 0:
            raise ValidationError("The budget cannot be negative; leave it empty for no budget.", code="min_value")
        return budget


def _zone_hint(name: str) -> str:
    """An IANA zone whose city part is `name` ("Berlin" → "Europe/Berlin"), if exactly one is."""
    wanted = name.strip().replace(" ", "_").lower()
    matches = [zone for zone in available_timezones() if zone.rsplit("/", 1)[-1].lower() == wanted]
    return matches[0] if len(matches) == 1 else ""


class SpendRangeForm(forms.Form):
    """The spend page's date range, in the team's time zone; both ends inclusive."""

    start = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            raise ValidationError("The range ends before it starts.")
        return data
