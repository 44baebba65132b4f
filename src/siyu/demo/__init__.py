"""The demo agency and its brands: the reference tenant used by ``make demo`` and tests."""
