"""The incident side: observations in, incidents and ticket actions out.

* ``engine`` — applies one classified observation to the store in one transaction.
* ``service`` — the daemon's consumer task and outbox worker around the engine.
* ``queue`` — the bounded observation queue between the scheduler and the engine.
* ``cli`` — ``storewatch incidents|tickets|silence`` on the same store.

The state they read and write lives in ``agent.state``; the decisions (levels, lifecycle,
grouping) are pure functions in ``classifier``.
"""
