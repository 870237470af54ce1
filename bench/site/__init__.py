"""The demo project plus a publish endpoint, served by gunicorn's gevent worker for the benchmark."""
