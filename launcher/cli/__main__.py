"""`python -m launcher.cli`: the same as the `modelserve` command."""

from launcher.cli.app import main

main()
