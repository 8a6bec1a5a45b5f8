"""emofeat's built-in extractor plugins.

They are registered through the ``emofeat`` entry-point group declared in emofeat's
``pyproject.toml`` - the same path a third-party plugin takes - and use only the public
``emofeat`` API.
"""
