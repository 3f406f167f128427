"""Prints the seed's request flow on lab hosts: seconds from Jenkins' push to the first answer through
Nginx, and the request latency through Nginx (HTTPS from the public network) against calling the
service directly (HTTP from the application server to swarm-master's published port).

Run as root: `venv/bin/python -m benchmarks.request_flow [--requests N]` (default 200). Same steps as
tests/lab/test_request_flow_lab.py (lab/request_flow.py); one connection per path, kept alive, so the
figures are per request, not per TLS handshake.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from pathlib import Path

from benchmarks.report import figure
from lab import temporary_lab
from lab.request_flow import FLOW_HOSTS, Flow, bring_up, deploy, flow_program, in_namespace
from lab.swarm import reset

ROUNDS = 10


def latencies(argv: list[str], url: str, count: int) -> list[float]:
    """Seconds per request of ``count`` requests on one kept-alive connection (curl's time_total of each)."""
    each = [arg for _ in range(count) for arg in ("-o", "/dev/null", url)]  # one -o per URL
    result = subprocess.run([*argv, "-sS", "-w", "%{time_total}\n", *each],
                            capture_output=True, text=True, timeout=300, check=True)
    return [float(t) for t in result.stdout.split()]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.request_flow", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per path (default 200)")
    count = parser.parse_args().requests
    with temporary_lab(FLOW_HOSTS, "f") as (lab, hosts), tempfile.TemporaryDirectory(prefix="flow-bench-") as tmp:
        flow = Flow(hosts, flow_program(hosts, Path(tmp)), Path(tmp))
        try:
            ca = bring_up(flow)
            client = lab.public_client("application")
            deployment = deploy(flow, ca, client, "samarth", "samarth/esamwad-web", "hello\n")
            if not deployment.answer.endswith("\n200"):
                raise SystemExit(f"the flow did not answer: {deployment.job.stderr}{deployment.answer}")
            nginx_path = (["nsenter", f"--net=/var/run/netns/{client.namespace}", "curl", "--cacert", str(ca.ca),
                           "--resolve", f"{deployment.route_host}:443:{client.server_address}"],
                          f"https://{deployment.route_host}/")
            direct_path = (in_namespace(hosts["application"], ["curl"]),
                           f"http://{hosts['swarm-master'].address}:{deployment.port}/")
            # Interleaved batches, so the machine's other work weighs on both paths alike.
            via_nginx: list[float] = []
            direct: list[float] = []
            for _ in range(ROUNDS):
                via_nginx += latencies(*nginx_path, count // ROUNDS)
                direct += latencies(*direct_path, count // ROUNDS)
        finally:
            flow.close()
            reset([h for n, h in hosts.items() if n.startswith("swarm-")])
    nginx_ms, direct_ms = statistics.median(via_nginx) * 1000, statistics.median(direct) * 1000
    figure("push to first answer through Nginx", deployment.push_to_answer_s, "s", "Jenkins job: login, push, deploy")
    figure("request through Nginx (HTTPS, public network)", nginx_ms, "ms", f"median of {count}")
    figure("request direct to swarm-master (HTTP)", direct_ms, "ms", f"median of {count}")
    figure("added by Nginx", nginx_ms - direct_ms, "ms")

if __name__ == "__main__":
    main()
