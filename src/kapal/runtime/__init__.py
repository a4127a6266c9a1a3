"""OCI runtime: config.json to namespaces, cgroups, mounts and pivot_root; runc's verbs and state."""
