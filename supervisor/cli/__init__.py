"""``eunomiactl``: one module per command group."""
