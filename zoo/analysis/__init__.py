"""Tools that inspect trained models (neural collapse, alignment, feature visualisation, verification)."""
