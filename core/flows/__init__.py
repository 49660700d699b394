"""Multi-step procedures: registration, login, recovery, account. No HTTP objects here."""
