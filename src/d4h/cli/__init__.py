"""The `d4h` command line: one sub-app per capability, errors shown as one line."""
