# syntax=docker/dockerfile:1
# Synapse: two stages, so the image carries the installed packages but no pip cache or build tools.
#   serve:   (default command) gunicorn with the production config; never migrates
#   migrate: docker run … synapse python manage.py migrate_locked   (safe to run concurrently)
#   first admin + key: docker run … synapse python manage.py bootstrap

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install -r /tmp/requirements.txt

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SYNAPSE_PORT=8080 \
    SYNAPSE_LOG_FORMAT=json \
    SYNAPSE_STATIC_ROOT=/app/static
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin synapse
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Owned by root, read-only to the service user: the code cannot be rewritten at run time.
COPY . .
RUN SYNAPSE_SECRET_KEY=build-only-collectstatic python manage.py collectstatic --no-input -v 0
USER 10001
EXPOSE 8080
# Ready = database reachable, migrations applied, audit log writable, counter store reachable.
# No curl in a slim image: Python asks, and exits non-zero on anything but 200.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('SYNAPSE_PORT', '8080'), timeout=4).status != 200)"]
# exec form: gunicorn is PID 1 and gets the SIGTERM itself (graceful shutdown, SYNAPSE_GRACEFUL_TIMEOUT).
CMD ["gunicorn", "synapse.asgi:application", "-c", "synapse/gunicorn_conf.py"]
