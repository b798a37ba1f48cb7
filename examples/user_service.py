"""user-service of the demo as its own process: `python examples/user_service.py --help`.

The code is in tracing/demo/services/user.py, installed with the package.
"""

from tracing.demo.services.user import main

if __name__ == "__main__":
    raise SystemExit(main())
