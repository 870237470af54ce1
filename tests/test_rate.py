from django_realtime.websocket.rate import TokenBucket


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
