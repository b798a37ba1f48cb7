"""points-service of the demo as its own process: `python examples/points_service.py --help`.

The code is in tracing/demo/services/points.py, installed with the package.
"""

from tracing.demo.services.points import main

if __name__ == "__main__":
    raise SystemExit(main())
