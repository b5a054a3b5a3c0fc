"""Layer 7, suites: the TOML file format, the runner and its executors, analyses, the report, the CLI.

Nothing below imports from here.
"""
