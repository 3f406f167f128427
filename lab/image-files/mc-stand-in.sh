#!/bin/sh
# `mc ready local` of MinIO's stand-in (lab/image-files/minio.Dockerfile): exit 0 when the server behind
# mc's `local` alias (localhost:9000) answers its readiness path, as MinIO's own client does.
set -eu
if [ "$*" != "ready local" ]; then
  echo "mc stand-in: only 'mc ready local' is served here" >&2
  exit 1
fi
curl -fsS -o /dev/null http://127.0.0.1:9000/minio/health/ready
echo "The cluster is ready"
