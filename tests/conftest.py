import pytest

from django_realtime.hub import reset_hub


@pytest.fixture(autouse=True)
def _fresh_hub():
    """Give each test its own hub: the hub is a per-process singleton."""
    reset_hub()
    yield
    reset_hub()
