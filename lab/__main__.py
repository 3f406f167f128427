"""`python -m lab up|down|status|reboot|kill|destroy|rehearse`: lab machines, the `lab` stack file pointing at them,
and a rehearsal of `pulumi up` of that stack on them (lab/rehearsal.py)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from components.shared.model import SERVER_NAMES, ConfigError
from tools.offline import read_stack_values

from .core import DEFAULT_PREFIX, DEFAULT_STATE, DEFAULT_SUBNET, Lab, LabError, image_cache_state
from .machines import machine_image
from .rehearsal import lab_ca, point_dns, rehearse, with_versions
from .request_flow import jenkins_key
from .stack import LAB_STACK, write_stack_file


def host_names(spec: str) -> list[str]:
    """``--hosts 3`` (the first three server names) or ``--hosts swarm-master,swarm-node2``."""
    if spec.isdigit():
        count = int(spec)
        if not 1 <= count <= len(SERVER_NAMES):
            raise argparse.ArgumentTypeError(f"between 1 and {len(SERVER_NAMES)} hosts, or a list of names")
        return list(SERVER_NAMES[:count])
    return [n.strip() for n in spec.split(",") if n.strip()]


def pin(spec: str) -> tuple[str, str]:
    """``redis=redis:7.4.12`` -> (``redis``, ``redis:7.4.12``)."""
    key, equals, reference = spec.partition("=")
    if not equals or not key or not reference:
        raise argparse.ArgumentTypeError("KEY=REFERENCE, e.g. redis=redis:7.4.12")
    return key, reference


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    parser.add_argument("action", choices=("up", "down", "status", "reboot", "kill", "destroy", "image", "rehearse"),
                        help="reboot: clean, disk kept; kill: a power cut (`up` boots it again); destroy: machine and disk gone; "
                             "image: build the machine image unless it is cached; rehearse: deploy the lab stack for real")
    parser.add_argument("host", nargs="?", help="the host to reboot, kill or destroy, or to bring up alone")
    parser.add_argument("--hosts", type=host_names, default=list(SERVER_NAMES),
                        help="a number (the first N server names) or comma-separated names; default: the six servers")
    parser.add_argument("--bare", action="store_true", help="up: machines without Docker, as a fresh OS")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"names of namespaces and links (default {DEFAULT_PREFIX})")
    parser.add_argument("--subnet", default=DEFAULT_SUBNET, help=f"private subnet; the bridge takes .1 (default {DEFAULT_SUBNET})")
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE, help="keys, configs, logs and Docker data")
    parser.add_argument("--stack-file", type=Path, default=LAB_STACK, help="where `up` writes the lab stack")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds `up` and `reboot` wait for every machine")
    parser.add_argument("--preview", action="store_true", help="rehearse: list what an up would do, with its cause; change nothing")
    parser.add_argument("--replace", action="append", default=[], metavar="URN", help="rehearse: replace this resource (repeatable)")
    parser.add_argument("--target", action="append", metavar="URN", help="rehearse: perform only these resources (repeatable)")
    parser.add_argument("--pin", action="append", default=[], metavar="KEY=REFERENCE", type=pin,
                        help="rehearse: versions.KEY set to REFERENCE over the stack's own (a version bump; repeatable)")
    args = parser.parse_args(argv)
    if args.action in ("reboot", "kill", "destroy") and not args.host:
        parser.error(f"{args.action} needs a HOST")
    names = [args.host] if args.host else args.hosts

    try:
        if args.action == "image":
            state, started = image_cache_state(), time.monotonic()
            machine_image(docker=True)
            machine_image(docker=False)
            print(f"machine image cache: {state}" + (f", built in {time.monotonic() - started:.0f}s" if state == "cold" else ""))
            return 0
        lab = Lab(args.prefix, args.subnet, args.state, timeout=args.timeout)
        if args.action == "up":
            started = time.monotonic()
            print(f"machine image cache: {image_cache_state()}")
            hosts = lab.up(names, bare=args.bare)
            print(f"lab up in {time.monotonic() - started:.1f}s:")
            for host in hosts:
                print(f"  {host.name:<14} {host.address:<15} {host.address6:<22} DOCKER_HOST={host.docker_host}")
            try:
                path = write_stack_file(lab.hosts(), args.stack_file, pulumi_from=lab.gateway)
                print(f"wrote {path} (stack `lab`)")
            except ValueError as exc:  # ConfigError is a ValueError too
                print(f"stack file not written: {exc}", file=sys.stderr)
            print(f"SSH for Pulumi: `ssh-add {lab.key_path}` (commands) and `Include {lab.ssh_config}` at the top of ~/.ssh/config (Docker)")
            print(f"log in: ssh -F {lab.ssh_config} {hosts[0].address}")
            return 0
        if args.action == "reboot":
            started = time.monotonic()
            lab.reboot(args.host)
            print(f"{args.host} rebooted and answers again after {time.monotonic() - started:.1f}s")
            return 0
        if args.action == "kill":
            lab.kill(args.host)
            print(f"{args.host} is off (power cut); `python -m lab up {args.host}` boots it again")
            return 0
        if args.action == "destroy":
            lab.destroy(args.host)
            print(f"{args.host} is gone, disk included; `python -m lab up {args.host}` makes a new machine")
            return 0
        if args.action == "rehearse":
            # The lab's CA runs for the rehearsal only: a renewal timer firing later finds no CA and fails.
            with lab_ca(lab, args.state) as acme:
                write_stack_file(lab.hosts(), args.stack_file, pulumi_from=lab.gateway, acme=acme, deploy_key=jenkins_key(args.state))
                values, _ = read_stack_values(args.stack_file)
                point_dns(lab, values)
                rehearsal = rehearse("lab", with_versions(values, dict(args.pin)), {"sshPrivateKey": lab.key_path.read_text()},
                                     args.state / "rehearsal.json",
                                     lab.hosts(), preview=args.preview, replace=args.replace, targets=args.target)
            print(rehearsal.report())
            return 1 if rehearsal.failed() else 0
        if args.action == "down":
            lab.down()
            args.stack_file.unlink(missing_ok=True)
            print(f"lab {args.prefix} is down")
            return 0
        rows = lab.status()
        if not rows:
            print(f"no lab {args.prefix} (state {lab.state_dir})")
            return 1
        print(f"{'host':<14} {'address':<15} {'machine':<8} {'systemd':<9} {'sshd':<5} dockerd")
        mark = {True: "up", False: "down", None: "none"}
        for row in rows:
            print(f"{row['name']:<14} {row['address']:<15} {mark[bool(row['machine'])]:<8} {row['systemd']!s:<9} "
                  f"{mark[bool(row['sshd'])]:<5} {mark[row['dockerd'] if row['dockerd'] is None else bool(row['dockerd'])]}")
        return 0 if all(row["sshd"] and row["dockerd"] is not False for row in rows) else 1
    except (LabError, ConfigError) as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
