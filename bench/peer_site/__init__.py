"""The peer, django-eventstream, in a minimal project of its own (run from its own venv)."""
