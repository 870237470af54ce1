import pytest
from django.test import override_settings

from django_realtime.rates import (
    PRESENCE,
    PUBLISH,
    Limiter,
    TokenBucket,
    client_key,
    request_address,
    scope_address,
)


def test_token_bucket_allows_a_burst_then_the_rate():
    bucket = TokenBucket(rate=2.0, burst=3, now=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(100.4)
    assert bucket.take(100.5)
    assert not bucket.take(100.5)
    assert [bucket.take(110.0) for _ in range(4)] == [True, True, True, False], "tokens never exceed the burst"


def test_token_bucket_burst_is_at_least_one():
    bucket = TokenBucket(rate=1.0, burst=0, now=0.0)
    assert bucket.take(0.0)
    assert not bucket.take(0.5)


def test_the_limiter_remembers_a_bounded_number_of_clients_the_least_recently_seen_forgotten():
    limiter = Limiter(size=5)
    for n in range(8):
        assert limiter.take(f"address:10.0.0.{n}", PUBLISH, now=0.0)
    assert limiter.take("address:10.0.0.3", PUBLISH, now=0.0)  # seen again: the most recent
    assert len(limiter) == 5
    assert [client for _, client in limiter._buckets] == [f"address:10.0.0.{n}" for n in (4, 5, 6, 7, 3)]


def test_each_kind_has_a_bucket_of_its_own_per_client():
    limiter = Limiter()
    with override_settings(REALTIME={"WEBSOCKET_PUBLISH_RATE": 1, "WEBSOCKET_PUBLISH_BURST": 2, "PRESENCE_BURST": 1}):
        assert [limiter.take("user:1", PUBLISH, now=0.0) for _ in range(3)] == [True, True, False]
        assert [limiter.take("user:1", PRESENCE, now=0.0) for _ in range(2)] == [True, False]
        assert limiter.take("user:2", PUBLISH, now=0.0), "another client has its own"
        assert limiter.take("user:1", PUBLISH, now=1.0), "a token a second comes back"


def test_a_kind_set_to_none_is_not_limited():
    limiter = Limiter()
    with override_settings(REALTIME={"PRESENCE_RATE": None}):
        assert all(limiter.take("address:1.2.3.4", PRESENCE, now=0.0) for _ in range(1000))
        assert len(limiter) == 0


class User:
    def __init__(self, pk, authenticated=True):
        self.pk = pk
        self.is_authenticated = authenticated


@pytest.mark.parametrize(
    ("user", "address", "key"),
    [
        (User(7), "10.0.0.1", "user:7"),
        (User(None, authenticated=False), "10.0.0.1", "address:10.0.0.1"),
        (None, "10.0.0.1", "address:10.0.0.1"),
        (None, "2001:db8:1:2:3:4:5:6", "address:2001:db8:1:2::/64"),
        (None, "2001:db8:1:2:ffff::1", "address:2001:db8:1:2::/64"),
        (None, "::ffff:10.0.0.9", "address:10.0.0.9"),
        (None, None, "address:"),
    ],
)
def test_a_client_is_its_user_else_its_network_address(user, address, key):
    assert client_key(user, address) == key


def test_the_address_is_the_connections_unless_a_proxy_header_is_named():
    meta = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 192.0.2.7"}
    scope = {"client": ["10.0.0.1", 5000], "headers": [(b"x-forwarded-for", b"6.6.6.6, 192.0.2.7")]}
    assert request_address(meta) == scope_address(scope) == "10.0.0.1", "a header a client can send counts for nothing"
    with override_settings(REALTIME={"CLIENT_ADDRESS_HEADER": "X-Forwarded-For"}):
        # The last address is the one the proxy added; the ones before it are the client's to choose.
        assert request_address(meta) == scope_address(scope) == "192.0.2.7"
        assert request_address({"REMOTE_ADDR": "10.0.0.1"}) == "10.0.0.1", "no header: the connection's"
