"""kapal: a container platform from the Linux primitives up."""

__version__ = "0.1.0"
