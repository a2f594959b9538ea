"""The Forge door (CONTRACT §9): the Forge app's manifest, and Forge Remote calling this backend with Forge
Invocation Tokens."""
