"""The demo's settings (testproject/settings.py): what the docs advise for a site with calls."""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from django_realtime import publish
from django_realtime.models import Event
from django_realtime.retention import prune, rules
from testproject import settings as demo

pytestmark = pytest.mark.django_db

CANDIDATE = {"from": "a1", "candidate": {"candidate": "candidate:1 1 udp 2122260223 192.0.2.7 50000 typ host"}}


def test_the_demo_keeps_call_signalling_for_minutes_and_chat_history_as_long_as_ever():
    """Signalling holds both users' IP addresses (ICE candidates): docs/webrtc.md#security advises minutes."""
    signal = publish("call:1-2", CANDIDATE, event="webrtc.candidate")
    message = publish("chat:lobby", {"nick": "ann", "text": "hi"})
    fresh = publish("call:1-2", {"from": "a1"}, event="webrtc.hello")
    Event.objects.filter(pk__in=[signal.pk, message.pk]).update(created=timezone.now() - timedelta(minutes=6))
    with override_settings(REALTIME=demo.REALTIME):
        prune()
        (call_rule,) = [rule for rule in rules() if rule.governs("call:1-2")]
    assert list(Event.objects.order_by("id").values_list("id", flat=True)) == [message.id, fresh.id]
    assert (call_rule.older_than, call_rule.keep) == (timedelta(minutes=5), 200)
