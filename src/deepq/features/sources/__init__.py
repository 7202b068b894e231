"""Fundamental and alternative data behind one `FeatureSource` interface, joined point-in-time on the date
the information became public (see base.py). `source_features` turns sources into [T, N] panel features."""

from deepq.features.sources.base import (
    FeatureSource,
    asof_join,
    available_date,
    events_on_sessions,
    last_value_on_sessions,
)
from deepq.features.sources.files import FredCsv, NewsSentimentCsv, OptionsFlowCsv
from deepq.features.sources.panel import append_source_features, source_features
from deepq.features.sources.yahoo import YahooEarnings, YahooInsider, YahooRatings

__all__ = [
    "FeatureSource",
    "FredCsv",
    "NewsSentimentCsv",
    "OptionsFlowCsv",
    "YahooEarnings",
    "YahooInsider",
    "YahooRatings",
    "append_source_features",
    "asof_join",
    "available_date",
    "events_on_sessions",
    "last_value_on_sessions",
    "source_features",
]
