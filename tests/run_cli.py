"""`modelserve` with the test backends registered: python -m tests.run_cli ARGS..."""

from tests.script_backend import register

register()

from launcher.cli import main  # noqa: E402

main()
