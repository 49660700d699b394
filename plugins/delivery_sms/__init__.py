"""Delivery channel delivery_sms (being written)."""
