"""Widgets of the mixtui screen."""
