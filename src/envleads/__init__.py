"""envleads: citizen environmental complaints in, ranked enforcement leads out."""

__version__ = "0.1.0"
