# The trainer / initializer image: runs `python -m kubetune.initializers ...` and
# `torchrun -m kubetune.trainer ...` in the JobSet's pods.
#   docker build -f deploy/docker/trainer.Dockerfile -t ghcr.io/kubetune/kubetune:0.1.0 .
# BASE picks the torch build: the default is CUDA; for a CPU-only image (kind, CI) use
#   --build-arg BASE=python:3.11-slim --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG BASE=pytorch/pytorch:2.11.0-cuda12.8-cudnn9-runtime
FROM ${BASE}
ARG TORCH_INDEX=""
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 HF_HOME=/workspace/.cache/huggingface
WORKDIR /opt/kubetune
COPY pyproject.toml README.md* ./
COPY src ./src
RUN if [ -n "${TORCH_INDEX}" ]; then pip install --index-url "${TORCH_INDEX}" "torch>=2.6,<2.14"; fi \
 && pip install ".[gguf]"
RUN useradd --uid 1000 --create-home kubetune
USER 1000
WORKDIR /workspace
ENTRYPOINT []
CMD ["python", "-m", "kubetune.trainer", "--help"]
