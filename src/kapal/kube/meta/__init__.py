"""Pure Kubernetes object logic shared by every component: resource registry, selectors, quantities."""
