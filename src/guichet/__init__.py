"""guichet: an account-and-login framework for public-service portals.

The package's parts live in folders of their own at the root of the source tree and are installed
as ``guichet.core`` (the rules and the plugin contract, from ``core/``), ``guichet.plugins`` (the
built-in plugins, from ``plugins/``) and ``guichet.web`` (the Litestar layer, from ``web/``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("guichet-auth")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"
