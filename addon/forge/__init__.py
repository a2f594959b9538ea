"""The Forge door (CONTRACT §9): Forge Remote calls this backend with Forge Invocation Tokens."""
