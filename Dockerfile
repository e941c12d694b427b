# edge in a container: the emulator, plus the clients the README's experiments use.
FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl dnsutils openssl netcat-openbsd iproute2 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY edge edge
COPY spectrum spectrum
COPY cdn cdn
COPY resolver resolver
COPY certs certs
RUN pip install --no-cache-dir .
COPY docker/entrypoint.sh /usr/local/bin/edge-entrypoint
COPY docker/edge.yaml /etc/edge/edge.yaml
ENV EDGE_STATE_DIR=/state
EXPOSE 8900
ENTRYPOINT ["edge-entrypoint"]
CMD ["edge", "up", "--init-config", "/etc/edge/edge.yaml", "--state-dir", "/state"]
