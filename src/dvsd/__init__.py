"""dvsd: the management daemon of a DVS cluster."""

__version__ = "0.1.0"
