"""The `recon` command: database set-up, the Dagster UI and the demo (see `recon --help`)."""
