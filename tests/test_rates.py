import pytest
from django.test import override_settings

from django_realtime.rates import (
    PRESENCE,
    PUBLISH,
    Limiter,
    TokenBucket,
    client_key,
    rate_message,
    request_address,
    request_client,
    retry_after,
    scope_address,
    scope_client,
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


def test_the_address_a_proxy_header_names_is_its_last_whatever_the_number_of_hops():
    with override_settings(REALTIME={"CLIENT_ADDRESS_HEADER": "X-Forwarded-For"}):
        for header, address in [
            ("192.0.2.7", "192.0.2.7"),  # one hop: the client itself
            ("6.6.6.6,192.0.2.7", "192.0.2.7"),  # no space after the comma
            ("6.6.6.6, 7.7.7.7, 192.0.2.7", "192.0.2.7"),  # the ones before the last are the client's to choose
        ]:
            meta = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": header}
            scope = {"client": ["10.0.0.1", 5000], "headers": [(b"x-forwarded-for", header.encode())]}
            assert request_address(meta) == scope_address(scope) == address, header
        assert scope_address({"client": ["10.0.0.1", 5000]}) == "10.0.0.1", "no headers at all: the connection's"
        assert request_address({"HTTP_X_FORWARDED_FOR": " , "}) is None, "an empty last hop names no one"
    assert scope_address({"headers": []}) is None, "a connection without a client address (a Unix socket)"


class Anonymous:
    pk = 7  # is_authenticated missing: not a signed-in user, whatever its pk


class NoPk:
    is_authenticated = True


@pytest.mark.parametrize(
    ("user", "key"),
    [
        (User(None, authenticated=True), "address:10.0.0.1"),
        (User(7, authenticated=False), "address:10.0.0.1"),
        (Anonymous(), "address:10.0.0.1"),
        (NoPk(), "address:10.0.0.1"),
    ],
)
def test_only_a_signed_in_user_with_a_primary_key_is_named_by_it(user, key):
    assert client_key(user, "10.0.0.1") == key


def test_an_address_is_parsed_in_brackets_and_anything_else_is_kept_but_bounded():
    assert client_key(None, "[2001:db8:1:2::9]") == "address:2001:db8:1:2::/64"
    assert client_key(None, " 10.0.0.1 ") == "address:10.0.0.1"
    assert client_key(None, "/run/" + "x" * 200) == "address:" + ("/run/" + "x" * 200)[:100]


def test_the_limiter_reads_the_clock_itself_when_given_no_time():
    limiter = Limiter()
    with override_settings(REALTIME={"WEBSOCKET_PUBLISH_RATE": 0.001, "WEBSOCKET_PUBLISH_BURST": 1}):
        assert limiter.take("user:1", PUBLISH)
        assert not limiter.take("user:1", PUBLISH)


def test_a_new_bucket_refills_at_the_rate_not_at_the_burst():
    limiter = Limiter()
    with override_settings(REALTIME={"WEBSOCKET_PUBLISH_RATE": 1, "WEBSOCKET_PUBLISH_BURST": 3}):
        assert [limiter.take("user:1", PUBLISH, now=0.0) for _ in range(4)] == [True, True, True, False]
        assert not limiter.take("user:1", PUBLISH, now=0.5), "half a token at 1/s"
        assert limiter.take("user:1", PUBLISH, now=1.0)


def test_an_unknown_kind_of_limit_is_an_error_that_names_it():
    with pytest.raises(ValueError, match="unknown kind of rate limit: 'chat'"):
        Limiter().take("user:1", "chat")


def test_retry_after_is_the_whole_seconds_until_the_next_token_at_least_one():
    with override_settings(REALTIME={"WEBSOCKET_PUBLISH_RATE": 0.4, "PRESENCE_RATE": 5}):
        assert retry_after(PUBLISH) == 3
        assert retry_after(PRESENCE) == 1
    with override_settings(REALTIME={"WEBSOCKET_PUBLISH_RATE": 0.5, "PRESENCE_RATE": None}):
        assert retry_after(PUBLISH) == 2
        assert retry_after(PRESENCE) == 1
    with override_settings(REALTIME={"WEBSOCKET_PUBLISH_RATE": 0}):
        assert retry_after(PUBLISH) == 1, "a rate of 0 refuses every action: no division by it"


def test_a_refusal_names_the_limit_and_the_kind():
    with override_settings(REALTIME={"WEBSOCKET_PUBLISH_RATE": 2.5, "PRESENCE_RATE": 10}):
        assert rate_message(PUBLISH) == "more than 2.5 publishes per second; wait and retry"
        assert rate_message(PRESENCE) == "more than 10 presence joins, leaves and lookups per second; wait and retry"
    with override_settings(REALTIME={"PRESENCE_RATE": None}):
        assert rate_message(PRESENCE).startswith("more than 0 presence joins")


def test_a_request_and_a_websocket_of_one_client_share_its_name():
    from django.test import RequestFactory

    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1")
    request.user = User(None, authenticated=False)
    scope = {"client": ["10.0.0.1", 5000], "user": User(None, authenticated=False)}
    assert request_client(request) == scope_client(scope) == "address:10.0.0.1"
    request.user = scope["user"] = User(3)
    assert request_client(request) == scope_client(scope) == "user:3"
    del request.user
    assert request_client(request) == "address:10.0.0.1", "no authentication middleware: the address"
