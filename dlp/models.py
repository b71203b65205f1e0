"""DLP policy as data: patterns (hand-made or installed from a pack), per-team overrides of
their action, and the one policy version every worker polls to know when to rebuild."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from . import validators
from .engine import Action, Direction, PatternSpec, compile_check
from .packfile import SEVERITIES
from .prefix import stream_hold_problem


def validator_choices() -> list[tuple[str, str]]:
    """Callable, so a validator added to dlp.validators needs no migration."""
    return [("", "(none)"), *((name, name) for name in validators.names())]


# The console's labels for the engine's values (`engine.Action`, `engine.Direction` define them).


class PatternAction(models.TextChoices):
    BLOCK = Action.BLOCK.value, "Block (refuse the request)"
    REDACT = Action.REDACT.value, "Redact (replace the match, forward)"
    ALERT = Action.ALERT.value, "Alert (record, forward unchanged)"


class OverrideAction(models.TextChoices):
    BLOCK = Action.BLOCK.value, "Block"
    REDACT = Action.REDACT.value, "Redact"
    ALERT = Action.ALERT.value, "Alert"
    OFF = Action.OFF.value, "Off (this team does not apply the pattern)"


class AppliesTo(models.TextChoices):
    PROMPT = Direction.PROMPT.value, "Prompts"
    RESPONSE = Direction.RESPONSE.value, "Responses"
    BOTH = Direction.BOTH.value, "Prompts and responses"


class Severity(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


assert tuple(Severity.values) == SEVERITIES  # the pack format and the model must agree


class Pattern(models.Model):
    name = models.CharField(
        max_length=120, unique=True, help_text="Unique; pack patterns are named <pack>.<pattern>. Shown in audit rows."
    )
    category = models.CharField(
        max_length=60, help_text="Upper case, e.g. EMAIL. Named in block errors and in [REDACTED:<CATEGORY>]."
    )
    expression = models.TextField(
        help_text="An RE2 expression (no look-around, no back-references). A group named 'value' marks the part to redact."
    )
    validator = models.CharField(
        max_length=40, blank=True, choices=validator_choices, help_text="A check run on each match, so look-alikes don't count."
    )
    action = models.CharField(max_length=8, choices=PatternAction.choices, default=PatternAction.REDACT)
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.MEDIUM)
    applies_to = models.CharField(max_length=8, choices=AppliesTo.choices, default=AppliesTo.BOTH)
    enabled = models.BooleanField(default=True)
    pack = models.CharField(max_length=60, blank=True, db_index=True, help_text="The pack that installed it; empty = hand-made.")
    pack_version = models.PositiveIntegerField(null=True, blank=True)
    basis = models.TextField(blank=True, help_text="Why the pattern exists: the regulation's article or section.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pack", "name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        self.category = self.category.strip().upper()
        errors: dict[str, str] = {}
        reason = compile_check(self.expression)
        if reason is not None:
            errors["expression"] = f"RE2 refuses this expression: {reason}"
        elif self.applies_to != AppliesTo.PROMPT and (reason := stream_hold_problem(self.expression)) is not None:
            # Only answers stream: a prompt-only pattern never decides a hold-back.
            errors["expression"] = f"Streams cannot be scanned with this expression: {reason}"
        if self.validator and validators.get(self.validator) is None:
            errors["validator"] = f"unknown validator {self.validator!r} (known: {', '.join(validators.names())})"
        if errors:
            raise ValidationError(errors)

    @property
    def spec(self) -> PatternSpec:
        """The engine's view of this row (what the scanners are built from)."""
        return PatternSpec(
            name=self.name,
            category=self.category,
            expression=self.expression,
            validator=self.validator,
            action=self.action,
            severity=self.severity,
            applies_to=self.applies_to,
        )


class TeamOverride(models.Model):
    """A team's own action for one pattern; 'off' means the team does not apply it."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="dlp_overrides")
    pattern = models.ForeignKey(Pattern, on_delete=models.CASCADE, related_name="overrides")
    action = models.CharField(max_length=8, choices=OverrideAction.choices)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "pattern"], name="dlp_override_one_per_team_pattern")]
        ordering = ["team", "pattern"]

    def __str__(self) -> str:
        return f"{self.team} / {self.pattern}: {self.action}"


class PolicyVersion(models.Model):
    """One row, bumped in the same transaction as every policy change.

    Workers poll it (dlp.selectors.dlp_policy) and rebuild their scanners when it moves.
    `changed_at` goes with the number so a row that was deleted and recreated (a flushed test
    database) is never mistaken for the policy a worker already holds.
    """

    SINGLETON = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON)
    version = models.BigIntegerField(default=0)
    changed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"DLP policy v{self.version}"
