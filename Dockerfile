# CPU image: deepq with the CPU torch wheel. Build: docker build -t deepq .  Run: docker run --rm deepq train debug=fdr
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 OMP_NUM_THREADS=2 WANDB_MODE=offline
RUN apt-get update && apt-get install -y --no-install-recommends git make && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 deepq
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
COPY conf ./conf
COPY data/sample ./data/sample
# torch from the CPU index first, so nothing pulls a CUDA build
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install -c constraints.txt -e .
USER deepq
# deepq serve: REST and gRPC (docker run -e DEEPQ_API_KEY=... -p 8000:8000 deepq serve host=0.0.0.0)
EXPOSE 8000 50051
ENTRYPOINT ["deepq"]
CMD ["train"]
