"""The demo's six services, one module each; every module runs as ``python -m`` on its own.

- ``order``          POST /orders -> ``order.created``; on ``stock.rejected`` -> ``order.cancelled``
- ``inventory``      ``order.created`` -> ``stock.reserved`` or ``stock.rejected``
- ``notification``   sends an SMS for ``stock.reserved`` and ``order.cancelled``; failed sends retry once
- ``points``         loyalty points for orders and registrations, idempotent by event id
- ``user``           POST /users -> ``user.registered``
- ``recommendation`` ``user.registered`` -> a new profile
"""
