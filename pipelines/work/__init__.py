"""Working the exceptions (issue 17): users and roles, the audit trail, and the decisions a
person takes on exceptions (assign, resolve, ignore, reopen), one by one or by filter.

Plain typed functions on a connection of `resources.database.organization_transaction`
(row-level security as `recon_app`); the `recon users` / `recon exceptions` commands are the
edges (`recon/cli_users.py`, `recon/cli_exceptions.py`).
"""
