"""One process's parts: the runtime shared by routes and workers, its background services, the worker child."""
