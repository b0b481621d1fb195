"""The headless commands behind `mixtui models` and `mixtui generate`."""
