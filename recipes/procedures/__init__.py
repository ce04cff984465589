"""The papers' training procedures (installed as ``zoo.recipes.procedures``): how parameters are updated.

A procedure owns the update rule, never the loop: ``backprop.py`` is the default (end-to-end backpropagation of the
task loss) and documents the protocol (``init`` / ``step`` / ``evaluate`` / ``variables``); every other module is
one paper's or family's procedure (``noprop``, ``boosting``, ``forward_gnn``, ``counter_current`` ...), and each
composes with any zoo model. A config names one as ``procedure.name = '<module>.<Class>'`` relative to this package
(``'noprop.NoPropDT'``); the loop in ``zoo.recipes.train`` runs whichever it is.
"""
