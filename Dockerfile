FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    DOSEREG_VAR_DIR=/app/var SPOOL_DIR=/data/spool
# dcmtk: storescu/echoscu for operators (test sends, troubleshooting)
RUN apt-get update && apt-get install -y --no-install-recommends dcmtk && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . .
# static files are collected into the image and served by whitenoise from $DOSEREG_VAR_DIR/static
RUN python manage.py collectstatic --noinput \
    && useradd --system --uid 10001 --home-dir /app dosereg \
    && mkdir -p /data/spool \
    && chown -R dosereg /app/var /data/spool
USER dosereg
EXPOSE 8000 11112
CMD ["gunicorn", "dosereg.wsgi:application", "--bind", "0.0.0.0:8000"]
