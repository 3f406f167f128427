"""The Redis restore drill on lab hosts, shared by tests/lab/test_backups_lab.py and benchmarks/backup_restore.py.

``redis-odk-adapter`` runs as ``pulumi up`` runs it (components/services/databases/catalogue.py): the password in a config
file uploaded into the container and in ``REDISCLI_AUTH``, ``--appendonly yes``, data on the volume
``redis-odk-adapter-data`` at /data; the image is the lab's services image (Debian's Redis 7.0 behind
the official image's entry point, lab/images.py). Values are compared through a digest computed inside
Redis: every key of every database, its type, its value read in a canonical order, and whether it
expires.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from lab import LabHost, docker

from .backup_drill import check

TARGET = "redis-odk-adapter"
VOLUME = f"{TARGET}-data"
PASSWORD = "drillredispassword0123456789"
CONFIG = "/usr/local/etc/redis/samarth.conf"
DATABASES = (0, 3)

# Keys of every common type with binary values; `keys` strings, a tenth as many of each other type,
# and one key that expires in a day (kept by the restore, unlike one that expired meanwhile).
FILL = """
local n = tonumber(ARGV[1])
local blob = string.rep(string.char(0, 255, 10, 13, 7), 20)
for i = 1, n do
  redis.call('SET', 'string:' .. i, blob .. i)
  if i % 10 == 0 then
    redis.call('HSET', 'hash:' .. i, 'a', i, 'b', blob, 'c', 'x' .. i)
    redis.call('RPUSH', 'list:' .. i, 'x', i, blob, 'y')
    redis.call('SADD', 'set:' .. i, 'm1', 'm' .. i, blob)
    redis.call('ZADD', 'zset:' .. i, i, 'z' .. i, 1.5, 'w')
  end
end
redis.call('SET', 'expires-tomorrow', 'later', 'EX', 86400)
return n
"""

# One line per database: its key count and a sha1 over "key type sha1(value) expires|persists".
DIGEST = """
local keys = redis.call('KEYS', '*')
table.sort(keys)
local lines = {}
for _, k in ipairs(keys) do
  local t = redis.call('TYPE', k)['ok']
  local v
  if t == 'string' then v = {redis.call('GET', k)}
  elseif t == 'list' then v = redis.call('LRANGE', k, 0, -1)
  elseif t == 'set' then v = redis.call('SMEMBERS', k); table.sort(v)
  elseif t == 'zset' then v = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
  elseif t == 'hash' then
    local h = redis.call('HGETALL', k)
    v = {}
    for i = 1, #h, 2 do v[#v + 1] = redis.sha1hex(h[i]) .. redis.sha1hex(h[i + 1]) end
    table.sort(v)
  else v = {'unsupported type'} end
  local expiry = redis.call('PTTL', k) > 0 and 'expires' or 'persists'
  lines[#lines + 1] = k .. ' ' .. t .. ' ' .. redis.sha1hex(table.concat(v, '\\0')) .. ' ' .. expiry
end
return #keys .. ' ' .. redis.sha1hex(table.concat(lines, '\\n'))
"""


def redis_cli(host: LabHost, *args: str, database: int = 0) -> str:
    """redis-cli in the live container, authenticated as the applications are (REDISCLI_AUTH)."""
    result = docker(host, "exec", TARGET, "redis-cli", "--no-auth-warning", "-n", str(database), *args, timeout=600)
    check(result, f"redis-cli {args[0]}")
    return result.stdout.strip()


def start_redis(host: LabHost, image: str, root: Path) -> None:
    """The container and volume as ``pulumi up`` makes them; a fresh volume starts an empty Redis."""
    settings = root / "redis-settings"
    settings.mkdir(exist_ok=True)
    (settings / "samarth.conf").write_text(f"requirepass {PASSWORD}\n")
    check(docker(host, "volume", "create", VOLUME), "creating the volume")
    check(
        docker(host, "create", "--name", TARGET, "--restart", "unless-stopped", "-e", f"REDISCLI_AUTH={PASSWORD}",
               "-v", f"{VOLUME}:/data", image, "redis-server", CONFIG, "--appendonly", "yes", "--maxmemory", "128mb",
               timeout=300),
        "creating the Redis container",
    )
    # As the program uploads the settings file into the container before it starts.
    check(docker(host, "cp", str(settings), f"{TARGET}:{Path(CONFIG).parent}"), "uploading the settings")
    check(docker(host, "start", TARGET), "starting Redis")
    wait_redis(host)


def wait_redis(host: LabHost) -> None:
    for _ in range(240):
        if docker(host, "exec", TARGET, "redis-cli", "--no-auth-warning", "ping").stdout.strip() == "PONG":
            return
        subprocess.run(["sleep", "0.5"], check=True)
    raise AssertionError(f"Redis did not start: {docker(host, 'logs', TARGET).stderr}")


def fill_redis(host: LabHost, keys: int) -> None:
    for database in DATABASES:
        redis_cli(host, "eval", FILL, "0", str(keys // (1 + database)), database=database)


def redis_digests(host: LabHost) -> dict[int, str]:
    return {database: redis_cli(host, "eval", DIGEST, "0", database=database) for database in DATABASES}


def destroy_redis(host: LabHost) -> None:
    """What a lost disk does: the container and its volume are gone."""
    check(docker(host, "rm", "-f", TARGET), "removing the container")
    check(docker(host, "volume", "rm", VOLUME), "removing the volume")
