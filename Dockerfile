# distrec on a Ray GPU image: the CUDA builds of the pinned stack (launch/install.sh gpu).
# Build:  docker build -t ghcr.io/distrec/distrec:0.1.0 .
# Run:    used as the image of cluster/ manifests; the entry point is `distrec`.
FROM rayproject/ray:2.60.0-py311-cu128

USER root
WORKDIR /opt/distrec
COPY pyproject.toml README.md ./
COPY launch/ launch/
COPY distrec/ distrec/
COPY configs/ configs/
RUN bash launch/install.sh gpu && python -m pip cache purge
ENV TORCH_EXTENSIONS_DIR=/opt/distrec/.cache/torch_extensions
USER ray
ENTRYPOINT ["distrec"]
