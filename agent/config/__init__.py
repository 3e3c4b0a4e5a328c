"""Configuration: YAML loading with file:line errors, substitution, durations and secrets.

``loader`` turns a YAML file into a validated pydantic model (``load_config``), ``durations``
parses ``30s``/``5m``/``1h30m`` values, ``secrets`` keeps the registry of values that must be
scrubbed from logs, exceptions and tickets. The models themselves live in ``schema``.
"""
