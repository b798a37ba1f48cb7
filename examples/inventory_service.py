"""inventory-service of the demo as its own process: `python examples/inventory_service.py --help`.

The code is in tracing/demo/services/inventory.py, installed with the package.
"""

from tracing.demo.services.inventory import main

if __name__ == "__main__":
    raise SystemExit(main())
