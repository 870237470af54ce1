"""The test harness, one copy of each piece, which bench/ imports too.

``servers``: the demo project under real servers (start, stop, logs, free
ports, ``project_env``), manage.py commands and publishers, and the httpx-sse
``EventStream``; ``websocket``: the ``websockets`` client's helpers;
``subscribers``: the asyncio subscriber pool and the delivery checks;
``processes``: process groups and what /proc says of a process;
``services``: the shared services, skipped with a reason when absent (failed
under CI); ``postgres_database``, ``mariadb_database``: a scratch database;
``redis_server``: a private redis-server; ``tcp_proxy``: a proxy a fault
test breaks; ``browser``: Chromium through Playwright; ``scale_out``,
``chaos``, ``rolling_restart``: the scenarios the tests and their benches
share.
"""
