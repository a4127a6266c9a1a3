"""Cluster DNS: Service and Pod records, forwarding to the host's resolvers."""
