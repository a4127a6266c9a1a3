"""The default plugins, one module each, in upstream's filter order."""
