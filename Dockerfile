FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY chatroute chatroute
COPY schemas schemas
COPY workers workers
RUN pip install --no-cache-dir .
USER nobody
CMD ["chatroute", "--help"]
