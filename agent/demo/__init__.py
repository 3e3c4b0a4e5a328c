"""The bundled demo storefront: a small shop on loopback with switchable faults.

It is the fixture of the integration tests and what ``storewatch demo`` shows a newcomer.
See :mod:`agent.demo.storefront` for the app and :mod:`agent.demo.catalog` for its products.
"""
