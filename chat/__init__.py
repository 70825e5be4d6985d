"""Chat channels: the durable event log, the broker that fans events out between
processes, and the WebSocket endpoint."""
