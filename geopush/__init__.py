"""geopush: location pings in, store visits out, the right offer pushed through FCM."""

__version__ = "0.1.0"
