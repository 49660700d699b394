"""OpenID Connect provider and forward auth for the caisse's services (docs/oidc.md).

The app registers these routes only when ``[oidc] enabled``; core imports nothing from here.
"""
