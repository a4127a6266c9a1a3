"""Containers as a service: lifecycle, shims, logs, volumes, networks; the Docker Engine API."""
