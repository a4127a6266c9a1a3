"""Async API client with informers, work queues and leader election (the client-go pattern)."""
