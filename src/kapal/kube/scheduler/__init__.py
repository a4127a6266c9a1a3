"""Scheduler: filter and score plugins, binding, a queue with backoff."""
