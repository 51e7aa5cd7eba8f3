"""dhanfeed: a Dhan market-data collector that keeps its 24-hour token alive by itself."""

__version__ = "0.1.0"
