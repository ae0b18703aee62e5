"""`python -m slackbot` runs the same entry point as the `slackbot` console script."""

from slackbot.cli import main

raise SystemExit(main())
