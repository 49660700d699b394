"""Identity question: the amount of a payment the caisse knows, in a window of months.

Settings, ``[plugins.settings.identity_payment.<status code>]``:
``kind`` ("benefit", "contributions_invoice" or "salary_contributions"), ``window_months`` and
``tolerance`` (euros, a decimal string, default "0"). Defaults follow the MSA guides: a benefit
received in the last 6 months (particulier), an invoice paid in the last 12 months (exploitant,
cotisant de solidarité), salary contributions paid in the last 12 months (entreprise,
employeur de jardinier).
"""
