"""Component resources of the postgres-mcp deployment, one concept per module."""
