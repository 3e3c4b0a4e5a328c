"""What the agent remembers: the incident store, its thread, its health, probe baselines.

* ``store`` — incidents, history, lifecycle, outbox, tickets, silences (versioned schema).
* ``thread`` — the one thread every daemon store call runs in.
* ``health`` — whether state is being saved (log lines, ``storewatch_state_writable``).
* ``baselines`` — product counts and learned script origins probes compare against.
"""
