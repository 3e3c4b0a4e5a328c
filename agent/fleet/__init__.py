"""Several agents on one shared store.

* ``placement`` — heartbeats of the agents, and the leases that make a ``placement: one`` check
  run on exactly one live agent each interval, with failover.
"""
