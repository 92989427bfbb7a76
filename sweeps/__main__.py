"""`python -m sweeps ...`: see sweeps/cli.py."""

from sweeps.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
