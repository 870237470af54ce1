"""The WebSocket transport: the JSON protocol, the Channels consumer, its outbox and daphne's flow control."""
