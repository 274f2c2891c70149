"""`python -m pipeline`: the `pipeline` command."""

from pipeline.entry import main

main()
