import uuid

import pytest
from django.test import override_settings

from django_realtime.auth import PRESENCE, PUBLISH, SUBSCRIBE, authorize, get_authorizer, is_pair_member, pair_channel


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


# Pair channels ---------------------------------------------------------------


class User:
    """Just what the hook reads of a user."""

    def __init__(self, pk, is_authenticated=True):
        self.pk = pk
        self.is_authenticated = is_authenticated


ANONYMOUS = User(None, is_authenticated=False)


@pytest.mark.parametrize(
    ("a", "b", "channel"),
    [
        (3, 7, "call:3-7"),
        (7, 3, "call:3-7"),
        (10, 2, "call:2-10"),  # integer keys in numeric order, not as text
        (User(12), User(5), "call:5-12"),
        ("b0c1", "a9f2", "call:a9f2-b0c1"),
    ],
)
def test_pair_channel_names_the_pair_lower_key_first(a, b, channel):
    assert pair_channel("call", a, b) == channel


@pytest.mark.parametrize(("a", "b"), [(3, 3), ("1-2", 3), ("", 3), ("a b", 3)])
def test_pair_channel_refuses_one_user_twice_and_keys_that_cannot_be_parsed_back(a, b):
    with pytest.raises(ValueError):
        pair_channel("call", a, b)


@pytest.mark.parametrize(
    ("user", "channel", "member"),
    [
        (User(3), "call:3-7", True),
        (User(7), "call:3-7", True),
        (User(4), "call:3-7", False),
        (User(1), "call:12-1", False),  # not the canonical name: nobody's
        (User(1), "call:1-12", True),
        (User(3), "call:7-3", False),
        (User(3), "call:3-3", False),
        (User(3), "call:3", False),
        (User(3), "call:3-7-9", False),
        (User(3), "callx:3-7", False),
        (ANONYMOUS, "call:3-7", False),
        (User(None), "call:None-3", False),
    ],
)
def test_is_pair_member_only_for_the_two_users_the_canonical_name_names(user, channel, member):
    assert is_pair_member(user, channel, "call") is member


@pytest.mark.parametrize("action", [SUBSCRIBE, PUBLISH, PRESENCE])
def test_default_hook_gives_a_pair_channel_to_its_two_users_alone_whatever_the_patterns(action):
    everything = {"PUBLIC_CHANNELS": ["*"], "PUBLISH_CHANNELS": ["*"], "PRESENCE_CHANNELS": ["*"]}
    with override_settings(REALTIME={**everything, "PAIR_CHANNELS": ["call"]}):
        assert authorize(User(3), "call:3-7", action)
        assert authorize(User(7), "call:3-7", action)
        assert not authorize(User(8), "call:3-7", action)
        assert not authorize(ANONYMOUS, "call:3-7", action)
        assert not authorize(User(3), "call:3-7", "delete")
        assert authorize(User(8), "chat:lobby", action)  # other channels keep the patterns


ANN = uuid.UUID("1b4e28ba-2fa1-11d2-883f-0016d3cca427")
BEN = uuid.UUID("a8098c1a-f86e-11da-bd1a-00112444be1e")


def test_users_with_uuid_keys_are_named_by_the_keys_hex_and_are_members_of_their_pair():
    channel = f"call:{ANN.hex}-{BEN.hex}"
    assert pair_channel("call", User(BEN), User(ANN)) == channel
    assert pair_channel("call", BEN, ANN) == channel
    assert pair_channel("call", BEN.hex, ANN.hex) == channel  # as the page names it
    assert is_pair_member(User(ANN), channel, "call")
    assert is_pair_member(User(BEN), channel, "call")
    assert not is_pair_member(User(uuid.uuid4()), channel, "call")
    assert not is_pair_member(User(ANN), f"call:{ANN}-{BEN}", "call")  # the dashed form is no pair channel
    with override_settings(REALTIME={"PUBLIC_CHANNELS": ["*"], "PAIR_CHANNELS": ["call"]}):
        assert authorize(User(ANN), channel, SUBSCRIBE)
        assert authorize(User(BEN), channel, PUBLISH)
        assert not authorize(User(uuid.uuid4()), channel, SUBSCRIBE)


def test_without_pair_channels_a_pair_name_is_an_ordinary_channel():
    with override_settings(REALTIME={"PUBLIC_CHANNELS": []}):
        assert not authorize(User(3), "call:3-7", SUBSCRIBE)
