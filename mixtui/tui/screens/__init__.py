"""The app's screens: the main one (screens/main.py) and the dialogs over it (dialogs.py)."""

from mixtui.tui.screens.dialogs import KEYS, AskScreen, HelpScreen, SamplingScreen

__all__ = ["KEYS", "AskScreen", "HelpScreen", "SamplingScreen"]
