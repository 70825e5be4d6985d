"""Test helpers that start real components: redis-server, server processes, clients."""
