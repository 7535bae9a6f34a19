"""The shipped search spaces (package data ``cycleseg.search_spaces``: ``*.yaml`` and ``schema.json``)."""
