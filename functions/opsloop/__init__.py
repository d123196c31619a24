"""opsloop: a self-learning operations loop for services on Cloud Functions for Firebase."""

__version__ = "0.1.0"
