"""The Server-Sent Events transport: the encoder, the responses, the endpoint, ``@event_stream`` and a middleware."""
