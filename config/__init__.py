"""The caisse configs guichet ships (the demo and two regional caisses), installed as
``guichet.configs`` so that ``guichet init`` can copy the demo one from the wheel alone."""
