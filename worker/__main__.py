"""`python -m worker` is the `profile-worker` command."""

from worker.cli import main

main()
