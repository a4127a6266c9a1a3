"""Revisioned, watchable key-value storage behind one interface: SQLite (default) and etcd."""
