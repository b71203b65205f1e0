FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 SYNAPSE_PORT=8080
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN SYNAPSE_SECRET_KEY=build-only-collectstatic python manage.py collectstatic --no-input -v 0
RUN useradd --system --uid 10001 synapse && chown -R synapse /app
USER synapse
EXPOSE 8080
CMD ["sh", "-c", "python manage.py migrate --no-input && exec gunicorn synapse.asgi:application -c synapse/gunicorn_conf.py"]
