"""Feature families. Importing this package registers every feature; add a family by importing its module here."""

from deepq.features.library import (  # noqa: F401
    alpha158,
    core,
    cross_section,
    microstructure,
    mtf,
    regime,
    technical,
)
