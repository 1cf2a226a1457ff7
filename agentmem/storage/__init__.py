"""Storage: the on-disk layout, the ledger, the weight store, published versions and what is cached per base model."""
