# One image for every jiuzhu process: intake, relay, projector (see docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain domain
COPY projections projections
COPY consumers consumers
COPY jiuzhu jiuzhu
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["jiuzhu"]
