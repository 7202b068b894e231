"""Feature families. Importing this package registers every feature; add a family by importing its module here."""

from deepq.features.library import core  # noqa: F401
