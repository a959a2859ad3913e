"""Analytics over the store: SQL builders and the `--where` parser (`queries`), plots."""
