"""mixtui: a terminal lab for Mixture-of-Experts language models."""

__version__ = "0.1.0"
