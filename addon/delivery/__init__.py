"""Delivery: the worker's loop over claimed deliveries, the outcomes of attempts (the only code that changes a
delivery's or a webhook's state), the retry policy, and housekeeping."""
