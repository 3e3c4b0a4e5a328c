"""Ticket sinks: one module per tracker, and the registry from config ``type`` to adapter."""
