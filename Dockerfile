# SignLens on a CPU machine. Build: docker build -t signlens .
# Run:  docker run -p 7860:7860 -v signlens-models:/home/signlens/.cache/huggingface \
#              -v signlens-data:/data signlens
# Listening on 0.0.0.0 with no users, the app starts in the *public* posture (recognition
# only). For curating and fine-tuning, mount a users file (python -m webapp.users add) and
# pass --auth: docker run ... -v $PWD/users.txt:/run/users.txt:ro signlens --auth /run/users.txt
FROM python:3.11-slim

# PyAV and OpenCV wheels bring their own FFmpeg; nothing else is needed from the system.
RUN useradd --create-home --uid 1000 signlens
WORKDIR /app
COPY --chown=signlens . /app
# The CPU-only PyTorch build (~0.7 GB) instead of PyPI's CUDA one (~4 GB).
RUN pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir . \
 && mkdir -p /data && chown signlens /data

USER signlens
ENV GRADIO_ANALYTICS_ENABLED=False HF_HUB_DISABLE_TELEMETRY=1 SIGNLENS_DATA=/data \
    SIGNLENS_HOST=0.0.0.0 SIGNLENS_PORT=7860
VOLUME ["/home/signlens/.cache/huggingface", "/data"]
EXPOSE 7860
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/healthz', timeout=5)"
ENTRYPOINT ["python", "app.py"]
