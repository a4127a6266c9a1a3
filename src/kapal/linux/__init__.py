"""Thin ctypes wrappers over the kernel: namespaces, mounts, pivot_root, capabilities, seccomp, cgroups."""
