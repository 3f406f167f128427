"""MinIO's S3 API in the lab's MinIO stand-in (lab/image-files/minio.Dockerfile): moto's S3, the server
moto_server runs for the service ``s3``, on MinIO's API port, with MinIO's health paths. In memory: a
restarted container starts with no bucket. It accepts every access key (no IAM)."""

import sys
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import create_backend_app
from werkzeug.serving import run_simple

HEALTH = ("/minio/health/live", "/minio/health/ready")


def main() -> None:
    port = int(sys.argv[1])
    s3 = create_backend_app("s3")

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") in HEALTH:
            start_response("200 OK", [("Content-Length", "0")])
            return [b""]
        return s3(environ, start_response)

    run_simple("0.0.0.0", port, app, threaded=True)


if __name__ == "__main__":
    main()
