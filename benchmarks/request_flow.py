"""Prints the seed's request flow on a stack the rehearsal deployed on fresh lab machines: seconds from
Jenkins' push to the first answer through Nginx, and the request latency through Nginx (HTTPS from the
public network) against calling the service directly (HTTP from the application server to swarm-master's
published port).

Run as root: `venv/bin/python -m benchmarks.request_flow [--requests N]` (default 200). Same steps as
tests/lab/test_rehearsal_lab.py (lab/request_flow.py); one connection per path, kept alive, so the figures
are per request, not per TLS handshake.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess

from benchmarks.report import figure
from lab.rehearsal import fresh_lab
from lab.request_flow import DeployedStack, deploy, in_namespace

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
    with fresh_lab("f") as lab:
        rehearsal = lab.rehearse()
        if rehearsal.failed():
            raise SystemExit(rehearsal.report())
        hosts = {host.name: host for host in lab.lab.hosts()}
        stack = DeployedStack(rehearsal.run, hosts, lab.work, lab.ca.issuer_roots)
        client = lab.lab.public_client("application")
        deployment = deploy(stack, client, "samarth", "samarth/esamwad-web", "hello\n")
        if not deployment.answer.endswith("\n200"):
            raise SystemExit(f"the flow did not answer: {deployment.job.stderr}{deployment.answer}")
        nginx_path = (["nsenter", f"--net=/var/run/netns/{client.namespace}", "curl", "--cacert", str(stack.public_roots),
                       "--resolve", f"{deployment.route_host}:443:{client.server_address}"],
                      f"https://{deployment.route_host}/")
        direct_path = (in_namespace(hosts["application"], ["curl"]), f"http://{hosts['swarm-master'].address}:{deployment.port}/")
        # Interleaved batches, so the machine's other work weighs on both paths alike.
        via_nginx: list[float] = []
        direct: list[float] = []
        for _ in range(ROUNDS):
            via_nginx += latencies(*nginx_path, count // ROUNDS)
            direct += latencies(*direct_path, count // ROUNDS)
    nginx_ms, direct_ms = statistics.median(via_nginx) * 1000, statistics.median(direct) * 1000
    figure("push to first answer through Nginx", deployment.push_to_answer_s, "s", "Jenkins job: login, push, deploy")
    figure("request through Nginx (HTTPS, public network)", nginx_ms, "ms", f"median of {count}")
    figure("request direct to swarm-master (HTTP)", direct_ms, "ms", f"median of {count}")
    figure("added by Nginx", nginx_ms - direct_ms, "ms")


if __name__ == "__main__":
    main()
