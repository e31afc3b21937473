"""`python -m recon` runs the `recon` command."""

from recon.cli import main

main()
