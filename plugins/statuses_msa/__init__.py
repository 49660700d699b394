"""The MSA's statuses ("Vous êtes..."): who can register, with which identifier and which questions.

No settings.
"""
