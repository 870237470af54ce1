import pytest
from django.test import override_settings

from django_realtime.auth import PUBLISH, SUBSCRIBE, authorize, get_authorizer


@pytest.mark.parametrize(
    ("channel", "action", "allowed"),
    [
        ("chat:lobby", SUBSCRIBE, True),
        ("news", SUBSCRIBE, True),
        ("secret", SUBSCRIBE, False),
        ("chat:lobby", PUBLISH, True),
        ("news", PUBLISH, False),
        ("chat:lobby", "delete", False),
    ],
)
def test_default_hook_allows_what_the_patterns_allow(channel, action, allowed):
    with override_settings(REALTIME={"PUBLIC_CHANNELS": ["chat:*", "news"], "PUBLISH_CHANNELS": ["chat:*"]}):
        assert authorize(None, channel, action) is allowed


def test_by_default_clients_may_not_publish_anywhere():
    with override_settings(REALTIME={"PUBLIC_CHANNELS": ["*"]}):
        assert authorize(None, "chat:lobby", SUBSCRIBE)
        assert not authorize(None, "chat:lobby", PUBLISH)


def test_patterns_match_case_sensitively():
    with override_settings(REALTIME={"PUBLISH_CHANNELS": ["chat:*"]}):
        assert not authorize(None, "Chat:lobby", PUBLISH)


def test_get_authorizer_imports_a_dotted_path_or_takes_a_callable():
    def hook(user, channel, action):
        return True

    with override_settings(REALTIME={"AUTHORIZE": hook}):
        assert get_authorizer() is hook
    with override_settings(REALTIME={"AUTHORIZE": "django_realtime.auth.authorize"}):
        assert get_authorizer() is authorize
