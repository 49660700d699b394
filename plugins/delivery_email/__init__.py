"""Delivery channel delivery_email (being written)."""
