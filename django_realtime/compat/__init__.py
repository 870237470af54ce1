"""Shims for code written against other packages' APIs, so that moving to django_realtime starts with an import."""
