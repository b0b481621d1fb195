"""The `mixtui` command line: parsing and the headless commands."""
