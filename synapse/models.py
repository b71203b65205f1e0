"""The gateway's own table: the atomic counters behind rate limits, token reservations and spend."""

from __future__ import annotations

from django.db import models


class Counter(models.Model):
    """One counter of `synapse.cache.CounterCache`; written only through that backend's SQL."""

    key = models.CharField(max_length=250, primary_key=True)
    value = models.BigIntegerField()
    expires = models.FloatField(null=True, db_index=True, help_text="Unix time; NULL = never.")

    class Meta:
        db_table = "synapse_counter"

    def __str__(self) -> str:
        return f"{self.key}={self.value}"
