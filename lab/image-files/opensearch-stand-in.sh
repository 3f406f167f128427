#!/bin/sh
# OpenSearch's stand-in (lab/image-files/opensearch.Dockerfile), the image's entry point: `opensearch`
# serves port 9200 with busybox's httpd for the user `admin` with basic authentication: `/` (the cluster's
# description), `/_cluster/health` (green) and `/_plugins/_security/authinfo`; a wrong password gets 401.
# As OpenSearch's security plugin reads OPENSEARCH_INITIAL_ADMIN_PASSWORD only when it creates its index,
# the password is taken from it on a data volume's first start and kept on the volume from then on. Any
# other command runs as given.
set -eu
if [ "${1:-opensearch}" != opensearch ]; then
  exec "$@"
fi
state=/usr/share/opensearch/data/samarth-stand-in
mkdir -p "$state"
if [ ! -s "$state/httpd.conf" ]; then
  if [ -z "${OPENSEARCH_INITIAL_ADMIN_PASSWORD:-}" ]; then
    echo "OpenSearch stand-in: no custom admin password found; set OPENSEARCH_INITIAL_ADMIN_PASSWORD" >&2
    exit 1
  fi
  (umask 077 && printf '/:admin:%s\n' "$OPENSEARCH_INITIAL_ADMIN_PASSWORD" >"$state/httpd.conf")
fi
site=$(mktemp -d)
mkdir -p "$site/_cluster" "$site/_plugins/_security"
echo '{"name":"samarth-stand-in","cluster_name":"docker-cluster","version":{"distribution":"opensearch","number":"stand-in"},"tagline":"A stand-in for OpenSearch (samarth lab): no search"}' >"$site/index.html"
echo '{"cluster_name":"docker-cluster","status":"green","timed_out":false,"number_of_nodes":1,"number_of_data_nodes":1,"active_shards_percent_as_number":100.0}' >"$site/_cluster/health"
echo '{"user":"User [name=admin, backend_roles=[admin], requestedTenant=null]","user_name":"admin","backend_roles":["admin"],"roles":["all_access"]}' >"$site/_plugins/_security/authinfo"
echo "OpenSearch stand-in: serving port 9200 (health and authinfo only)"
exec busybox httpd -f -p 9200 -h "$site" -c "$state/httpd.conf"
