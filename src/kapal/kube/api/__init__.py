"""The API server: REST machinery, codecs, OpenAPI, patch, tables, authn/authz, admission."""
