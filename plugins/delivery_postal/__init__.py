"""Delivery channel delivery_postal (being written)."""
