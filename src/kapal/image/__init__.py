"""Images: content store, manifests, registry client, safe layer extraction, overlay snapshots, commit."""
