"""Helpers shared by the tests."""

from scripts.tokens import PROJECT, bearer, emulator_token

__all__ = ["PROJECT", "bearer", "emulator_token"]
