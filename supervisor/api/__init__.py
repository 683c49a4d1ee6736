"""The control API: HTTP on a root-only unix socket, with an OpenAPI document."""
