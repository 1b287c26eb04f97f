"""Huoyan (火眼): intelligent inspection from good parts only, on an ordinary CPU."""

__version__ = "0.1.0"
