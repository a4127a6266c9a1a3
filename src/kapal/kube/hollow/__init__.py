"""Hollow nodes: simulated kubelets with no processes, for tests and scale benchmarks."""
