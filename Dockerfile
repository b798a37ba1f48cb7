# The demo services (tracing/demo) in one image; docker-compose.yml runs one container per service:
#   docker run kafka-event-tracing-demo:0.1.0 tracing.demo.services.inventory --bootstrap kafka:9092
FROM python:3.12.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml LICENSE kafka_event_tracing.py ./
COPY docs/PYPI.md ./docs/
COPY tracing ./tracing
RUN pip install ".[rabbitmq]"

USER nobody
ENTRYPOINT ["python", "-m"]
CMD ["tracing.demo.services.order", "--http-host", "0.0.0.0"]
