# ml-sidecar: the proxy on 8000, metrics/health/API on 9100.
#   docker build -t ml-sidecar .
#   docker run --rm -p 8000:8000 -p 9100:9100 -e SIDECAR_UPSTREAM_URL=http://model:8080 ml-sidecar
FROM python:3.11-slim

# A fixed numeric uid, so that Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 sidecar \
 && useradd --system --uid 10001 --gid sidecar --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin sidecar

WORKDIR /src
# Only what the package needs: the runtime dependencies, no dev extras, no tests or demo
# (`make test` installs the same wheel into a runtime-only venv and runs it).
COPY pyproject.toml README.md LICENSE ./
COPY sidecar ./sidecar
RUN pip install --no-cache-dir --disable-pip-version-check . \
 && rm -rf /src/build /src/*.egg-info

# The prediction store (delayed labels join against it); mount a volume here to keep it across restarts.
RUN mkdir -p /var/lib/ml-sidecar && chown 10001:10001 /var/lib/ml-sidecar
VOLUME /var/lib/ml-sidecar

WORKDIR /
USER 10001:10001
ENV PYTHONUNBUFFERED=1 SIDECAR_STATE_DIR=/var/lib/ml-sidecar
EXPOSE 8000 9100

# Liveness only (the process and its loop answer); readiness, which needs the
# model, is the orchestrator's /readyz probe. Slim images carry no curl. The
# empty ProxyHandler keeps an injected HTTP_PROXY from routing 127.0.0.1 away.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:%s/healthz' % (os.environ.get('SIDECAR_ADMIN_PORT') or '9100'), timeout=2)"]

ENTRYPOINT ["ml-sidecar"]
CMD ["serve"]
