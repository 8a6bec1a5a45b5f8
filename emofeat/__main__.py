"""``python -m emofeat``: the same as the ``emofeat`` console script."""

from emofeat.cli import main

if __name__ == "__main__":
    main()
