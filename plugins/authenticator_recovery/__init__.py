"""Recovery codes by post: a letter of ten single-use codes, for the day a person has lost every other
way to prove it is them (a phone lost or changed).

The authenticator is named ``recovery_code`` ("Codes de secours par courrier"). A person asks for a
set from Mon compte; the codes go by post, to the address the caisse's registry knows (the postal
channel, template ``recovery_codes_letter``), never to an address typed on the site nor by email or
SMS. Asking again makes the earlier set stop working. The table keeps each code as an HMAC under the
caisse's key, bound to the account, never in clear. A code logs in once; whoever uses one is then
asked to add a new way to log in (``then_enrol``). Core counts every try against the login's rate
limits, audits it and sends the notices.

No settings: ten codes of ten characters (about 47 bits each), from an alphabet without the
characters people confuse (0 and O, 1, I and L, 2 and Z, 5 and S, 8 and B), printed in two groups of
five ("ACDEF-34679"); what people type is read without case, spaces or dashes.
"""
