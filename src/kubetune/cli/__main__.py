"""``python -m kubetune.cli``."""

from kubetune.cli.main import main

main()
