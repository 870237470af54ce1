"""The baseline: a plain Channels broadcast (a group on the in-memory channel layer), served by daphne."""
