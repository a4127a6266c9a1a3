"""Node agent: pod sync loop over the engine, volumes, probes, streaming, static pods, node status."""
