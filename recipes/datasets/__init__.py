"""Dataset definitions, one module per group; every module here is imported when a dataset name is looked up."""
