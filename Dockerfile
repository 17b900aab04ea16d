# The detector image: `detector run` (the worker) by default; `detector tap` and
# `detector pager` with another command. Non-root, no compilers, a health check on /healthz.
# Build from the repository root: docker build -t llm-distill-detector .
# --build-arg COMPILED=1 compiles the per-event hot path with mypyc (`make compiled`): about a
# quarter less CPU per event; gcc and mypy stay in the build stage.
FROM python:3.11-slim-bookworm AS build
ARG COMPILED=0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY detector ./detector
COPY detector_lab ./detector_lab
COPY config ./config
# Editable install: the code stays in /app next to config/ (default.yaml, scenarios), where
# the detector looks for them; the virtual environment holds only the dependencies.
RUN python -m venv /opt/venv && /opt/venv/bin/pip install -e .
RUN if [ "$COMPILED" = 1 ]; then \
      apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null \
      && pip install -q --target /opt/build 'mypy>=1.13' 'setuptools>=77' \
      && PYTHONPATH=/opt/build /opt/venv/bin/python -m detector.native --build \
      && rm -rf build /opt/build; \
    fi

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin detector
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DETECTOR__METRICS__HOST=0.0.0.0
WORKDIR /app
USER 10001:10001
# 9108: /metrics, /healthz, /readyz (metrics.port); 8787: POST /v1/events of `detector tap`
EXPOSE 9108 8787
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('DETECTOR__METRICS__PORT', '9108'), timeout=4)"]
ENTRYPOINT ["detector"]
CMD ["run"]
