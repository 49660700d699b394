"""The MSA's password rule: at least 8 characters combining digits, upper case, lower case and
special characters. guichet's blocklist and personal-data rules still apply on top.

No settings; ``[passwords] min_length`` in the caisse config still overrides the length.
"""
