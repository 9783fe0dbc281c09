"""One reconciler per manifest kind: the rules and actions of change for that kind (see ``base``).

``catalogue.RECONCILERS`` maps each kind to its reconciler.
"""
