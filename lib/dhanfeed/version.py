"""The version, and the User-Agent every HTTP request and feed handshake carries (a leaf)."""

__version__ = "0.1.0"
USER_AGENT = f"dhanfeed/{__version__}"
