"""`python -m pipeline`: the `pipeline` command."""

from pipeline.entry import main

if __name__ == "__main__":
    main()
