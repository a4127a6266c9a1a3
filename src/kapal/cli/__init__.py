"""The `kapal` command line. Every verb lives in its own module, imported only when used."""
