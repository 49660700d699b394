"""Identity question: the serial number of the carte Vitale.

Offered to statuses that accept the "vitale" question; answerable only when the registry says
the person is affiliated to the caisse for health and has a card. No settings.
"""
