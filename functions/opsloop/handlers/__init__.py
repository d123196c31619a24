"""Thin adapters: parse the request, call one service, map errors to HTTP / callable codes."""
