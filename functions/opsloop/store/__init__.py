"""Firestore only: collection paths, documents, transactions."""
