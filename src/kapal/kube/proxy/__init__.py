"""Services to iptables rules (ClusterIP, NodePort), programmed in batches with iptables-restore."""
