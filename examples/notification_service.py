"""notification-service of the demo as its own process: `python examples/notification_service.py --help`.

The code is in tracing/demo/services/notification.py, installed with the package.
"""

from tracing.demo.services.notification import main

if __name__ == "__main__":
    raise SystemExit(main())
