"""Real-browser checks: one shared system Chromium driven by Playwright (the ``browser`` extra).

``runtime``: the shared browser process (bounded pages, memory ceiling, restarts, reaping);
``support``: whether the configured Chromium and Playwright can be used (validate/start);
``guard``: the refusal rules that keep a journey from placing an order;
``journey``: running one journey's steps and judging what the browser saw.
"""
