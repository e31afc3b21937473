"""The reconciliation engine as plain functions: rules, mapping, linkage, exceptions, records."""
