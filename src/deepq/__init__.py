"""deepq: deep-learning forecasting for equity markets."""

__version__ = "0.1.0"
