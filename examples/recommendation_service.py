"""recommendation-service of the demo as its own process: `python examples/recommendation_service.py --help`.

The code is in tracing/demo/services/recommendation.py, installed with the package.
"""

from tracing.demo.services.recommendation import main

if __name__ == "__main__":
    raise SystemExit(main())
