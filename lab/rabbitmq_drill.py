"""The RabbitMQ restore drill on lab hosts (tests/lab/test_restores_lab.py).

``rabbitmq-yaus`` runs as ``pulumi up`` runs it (components/services/databases/catalogue.py: the service's user, password
and vhost in ``RABBITMQ_DEFAULT_*``, a fixed hostname, data on ``rabbitmq-yaus-data`` at
/var/lib/rabbitmq), from the lab's RabbitMQ image (Debian's RabbitMQ 3.10, lab/images.py).
"""

from __future__ import annotations

import json
import subprocess
import time

from lab import LabHost, docker

from .backup_drill import check

TARGET = "rabbitmq-yaus"
VOLUME = f"{TARGET}-data"
USER, PASSWORD, VHOST = "yaus", "drillrabbitpassword0123", "yaus"

# What an application declares, beyond the service's own user and vhost: another vhost and user with
# permissions, a policy, an exchange, queues (one durable, in each vhost) and a binding.
DEFINITIONS = {
    "vhosts": [{"name": "reports"}],
    "users": [{"name": "reporter", "password_hash": "", "tags": []}],
    "permissions": [{"user": "reporter", "vhost": "reports", "configure": "^rep", "write": ".*", "read": ".*"}],
    "policies": [{"vhost": VHOST, "name": "ttl", "pattern": "^jobs", "apply-to": "queues", "definition": {"message-ttl": 60000}, "priority": 0}],
    "exchanges": [{"name": "events", "vhost": VHOST, "type": "topic", "durable": True, "auto_delete": False, "internal": False, "arguments": {}}],
    "queues": [
        {"name": "jobs", "vhost": VHOST, "durable": True, "auto_delete": False, "arguments": {"x-queue-type": "classic"}},
        {"name": "daily", "vhost": "reports", "durable": True, "auto_delete": False, "arguments": {}},
    ],
    "bindings": [{"source": "events", "vhost": VHOST, "destination": "jobs", "destination_type": "queue", "routing_key": "job.#", "arguments": {}}],
}


def rabbitmqctl(host: LabHost, *args: str, stdin: str = "") -> str:
    result = subprocess.run(["docker", "-H", host.docker_host, "exec", "-i", TARGET, "rabbitmqctl", "-q", *args],
                            input=stdin, capture_output=True, text=True, timeout=300)
    check(result, f"rabbitmqctl {args[0]}")
    return result.stdout


def start_rabbitmq(host: LabHost, image: str) -> None:
    """The container and volume as ``pulumi up`` makes them; a fresh volume starts an empty broker."""
    check(docker(host, "volume", "create", VOLUME), "creating the volume")
    check(
        docker(host, "run", "-d", "--name", TARGET, "--hostname", TARGET, "--restart", "unless-stopped",
               "-e", f"RABBITMQ_DEFAULT_USER={USER}", "-e", f"RABBITMQ_DEFAULT_PASS={PASSWORD}", "-e", f"RABBITMQ_DEFAULT_VHOST={VHOST}",
               "-v", f"{VOLUME}:/var/lib/rabbitmq", image, timeout=300),
        "starting RabbitMQ",
    )
    deadline = time.monotonic() + 180
    while docker(host, "exec", TARGET, "rabbitmqctl", "-q", "await_startup").returncode != 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"RabbitMQ did not start: {docker(host, 'logs', TARGET).stdout}")
        time.sleep(2)


def declare(host: LabHost) -> None:
    rabbitmqctl(host, "import_definitions", stdin=json.dumps(DEFINITIONS))
    rabbitmqctl(host, "change_password", "reporter", stdin="reporter-secret\n")


def definitions(host: LabHost) -> dict[str, list[dict[str, object]]]:
    """The broker's definitions, each section sorted, without what a restore may rightly change: the
    service user's password hash (the restore sets the deployed password again, with a new salt) and
    RabbitMQ 3.10's spelling of an empty vhost tag list ("" when created, [] when imported)."""
    exported = json.loads(rabbitmqctl(host, "export_definitions", "-"))
    sections = {}
    for section, objects in exported.items():
        if not isinstance(objects, list):
            continue
        for item in objects:
            if section == "users" and item["name"] == USER:
                item.pop("password_hash")
            if section == "vhosts" and item.get("metadata", {}).get("tags") == "":
                item["metadata"]["tags"] = []
        sections[section] = sorted(objects, key=lambda item: json.dumps(item, sort_keys=True))
    return sections


def authenticates(host: LabHost, user: str, password: str) -> bool:
    result = subprocess.run(["docker", "-H", host.docker_host, "exec", "-i", TARGET, "rabbitmqctl", "-q", "authenticate_user", user],
                            input=f"{password}\n", capture_output=True, text=True, timeout=120)
    return result.returncode == 0


def destroy_rabbitmq(host: LabHost) -> None:
    check(docker(host, "rm", "-f", TARGET), "removing the container")
    check(docker(host, "volume", "rm", VOLUME), "removing the volume")
