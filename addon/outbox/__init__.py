"""The outbox: events and their deliveries stored, claimed under a lease, and the wake-up of the workers."""
