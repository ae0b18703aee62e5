# slackbot in a container: docker build -t slackbot . && docker run --env-file .env slackbot
# (not built in CI: no Docker daemon there; tests/test_deploy.py checks this file's shape).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY slackbot ./slackbot
# Installed as root, run as a user who owns nothing but /data (the SQLite file, when no
# DATABASE_URL is given).
RUN pip install . \
    && useradd --create-home --uid 10001 slackbot \
    && mkdir /data \
    && chown slackbot /data
USER slackbot

ENV SLACKBOT_DB=/data/slackbot.db \
    PORT=3000
VOLUME /data
EXPOSE 3000

# /healthz on SLACKBOT_METRICS_PORT when set (Socket Mode has no other listener), else on PORT
# (HTTP mode). The slim image has no curl: Python's urllib asks.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('SLACKBOT_METRICS_PORT') or os.environ.get('PORT', '3000'); urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

# SIGTERM (docker stop) lets the replies in flight finish: give it stop_grace_period >= 25 s.
ENTRYPOINT ["slackbot"]
CMD ["run"]
