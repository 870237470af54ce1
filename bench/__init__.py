"""Load benchmark of django-realtime against django-eventstream; run by hand, never in CI."""
