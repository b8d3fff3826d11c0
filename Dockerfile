FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY chatroute chatroute
COPY schemas schemas
COPY workers workers
RUN pip install --no-cache-dir .
# The worker processes of `chatroute worker` share dramatiq's metrics through files here
# (emptied at each start) when CHATROUTE_WORKER_METRICS_PORT is set.
RUN mkdir -p /var/lib/chatroute/worker-metrics && chown nobody:nogroup /var/lib/chatroute/worker-metrics
ENV CHATROUTE_WORKER_METRICS_DIR=/var/lib/chatroute/worker-metrics
USER nobody
CMD ["chatroute", "--help"]
