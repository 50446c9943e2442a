"""`python -m launcher.cli`: the same as the `modelserve` command."""

from launcher.cli.root import main

main()
