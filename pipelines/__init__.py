"""The Dagster code location of Smart Reconciliation: a module per stage, wired in `definitions`."""
