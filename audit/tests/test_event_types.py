"""Every governance event is a declared event type, so the console can name it and filter on
it: services pass `EventType` members, and the writer refuses anything else."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent, EventType
from audit.services import audit_governance_event

pytestmark = pytest.mark.django_db


def test_it_records_a_declared_event_type() -> None:
    event = audit_governance_event(event_type=EventType.ROUTING_CHANGED, actor_name="ops", detail={"model": "m"})
    assert AuditEvent.objects.get(pk=event.pk).get_event_type_display() == "Routing changed"


def test_it_refuses_an_undeclared_event_type() -> None:
    with pytest.raises(ValueError, match="routing_renamed"):
        audit_governance_event(event_type="routing_renamed", actor_name="ops")  # type: ignore[arg-type]  # the wrong type on purpose
    assert not AuditEvent.objects.exists()
