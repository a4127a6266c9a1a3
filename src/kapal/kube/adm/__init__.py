"""kubeadm-faithful init and reset: preflight, PKI, kubeconfigs, static pods, bootstrap tokens."""
