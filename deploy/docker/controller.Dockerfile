# The TrainJob controller (kopf operator). It renders objects from the job spec types, so it
# needs kubetune's Python package but none of the training stack (no torch).
#   docker build -f deploy/docker/controller.Dockerfile -t ghcr.io/kubetune/controller:0.1.0 .
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /opt/kubetune
COPY pyproject.toml README.md* ./
COPY src ./src
RUN pip install --no-deps . \
 && pip install "pydantic>=2.7,<3" "pyyaml>=6" "kopf>=1.37" "kubernetes>=30"
USER 65532
ENTRYPOINT ["python", "-m", "kubetune.controller"]
