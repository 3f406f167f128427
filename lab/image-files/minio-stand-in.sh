#!/bin/sh
# MinIO's stand-in (lab/image-files/minio.Dockerfile), the image's entry point as `minio`: only
# `[minio] server DIR [--address [HOST]:PORT] [--console-address [HOST]:PORT]`, which checks the root
# credentials as MinIO does, leaves a note in DIR (the data volume) saying objects are not stored there,
# and serves S3 with MinIO's health paths (/minio/health/live, /minio/health/ready) on the API port
# (moto's S3 in memory: lab/image-files/s3-stand-in.py) and a page on the console port (busybox's httpd).
set -eu
if [ "${1:-}" = minio ]; then
  shift
fi
if [ "${1:-}" != server ]; then
  echo "MinIO stand-in: only 'minio server DIR --address :PORT --console-address :PORT' is served here" >&2
  exit 1
fi
shift
data="" address=":9000" console=""
while [ "$#" -gt 0 ]; do
  case "$1" in
    --address) address=$2; shift 2 ;;
    --address=*) address=${1#*=}; shift ;;
    --console-address) console=$2; shift 2 ;;
    --console-address=*) console=${1#*=}; shift ;;
    -*) shift ;;
    *) data=$1; shift ;;
  esac
done
[ -n "$data" ] || { echo "MinIO stand-in: no data directory given" >&2; exit 1; }
if [ "${#MINIO_ROOT_USER}" -lt 3 ] || [ "${#MINIO_ROOT_PASSWORD}" -lt 8 ]; then
  echo "MinIO stand-in: MINIO_ROOT_USER length should be at least 3, and MINIO_ROOT_PASSWORD length at least 8 characters" >&2
  exit 1
fi
mkdir -p "$data"
echo "A stand-in for MinIO (samarth lab) has this volume: its S3 keeps objects in memory, not here." >"$data/.samarth-stand-in"
# busybox's httpd takes [IP:]PORT; MinIO's ":PORT" means every address.
if [ -n "$console" ]; then
  site=$(mktemp -d)
  echo "MinIO stand-in: no console" >"$site/index.html"
  busybox httpd -p "${console#:}" -h "$site"
fi
echo "MinIO stand-in: S3 in memory on ${address}${console:+, console $console}"
exec python3 /usr/local/lib/samarth/s3-stand-in.py "${address##*:}"
