"""The HTTP edge every route shares: the JSON error shape, reading JSON bodies, the health check."""
