"""order-service of the demo as its own process: `python examples/order_service.py --help`.

The code is in tracing/demo/services/order.py, installed with the package.
"""

from tracing.demo.services.order import main

if __name__ == "__main__":
    raise SystemExit(main())
