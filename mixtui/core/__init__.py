"""Shared types and units: the bottom layer, imported by every other one."""
