"""Certificates and keys: CAs, serving and client certificates, kubeconfigs, service-account keys."""
