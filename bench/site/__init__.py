"""The demo project plus a publish endpoint: SSE under gunicorn's gevent worker, WebSockets under daphne."""
