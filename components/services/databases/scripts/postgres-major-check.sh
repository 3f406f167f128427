# shellcheck shell=sh
# Before a Postgres container is (re)created: refuse an image whose major version differs from the data
# directory already on its volume. A new major version cannot read an older data directory (it would
# stop, or, from 18 on, where the data sits under /var/lib/postgresql/<major>/docker, start an empty
# database beside the old data). Reads the volume through a throwaway container of the pinned image,
# read-only and without network; the running container is left alone.
# Inputs: CONTAINER, VOLUME, IMAGE, MAJOR (the image's major version), MOUNT_PATH.

step "looking for the data volume $VOLUME"
if ! docker volume inspect "$VOLUME" >/dev/null 2>&1; then
  echo "$CONTAINER: $VOLUME does not exist yet; Postgres $MAJOR will create its data directory at $MOUNT_PATH"
  exit 0
fi

step "reading PG_VERSION on $VOLUME"
# Up to 17 the volume is PGDATA itself; from 18 on PGDATA is <major>/docker inside the volume.
found=$(docker run --rm --network none --user 0 --entrypoint /bin/sh \
  --volume "$VOLUME:/samarth-volume:ro" "$IMAGE" -c '
for file in /samarth-volume/PG_VERSION /samarth-volume/*/docker/PG_VERSION; do
  if [ -f "$file" ]; then printf "%s %s\n" "${file#/samarth-volume/}" "$(cat "$file")"; fi
done') || fail "cannot read $VOLUME with $IMAGE; check that the image was pulled and that docker can run it"

if [ -z "$found" ]; then
  echo "$CONTAINER: $VOLUME holds no Postgres data directory yet; Postgres $MAJOR will create one at $MOUNT_PATH"
  exit 0
fi

step "comparing the data directory's major version with $IMAGE"
other=$(printf '%s\n' "$found" | awk -v major="$MAJOR" '$2 != major { print; exit }')
if [ -n "$other" ]; then
  file=${other%% *}
  version=${other#* }
  fail "$VOLUME holds a Postgres $version data directory ($file) but versions.postgres is $IMAGE (major $MAJOR). \
A major upgrade is not an image bump: keep versions.postgres at a $version.x release, then either \
dump and restore (pg_dumpall from the running $CONTAINER container, a new $MAJOR container on a new volume, psql < dump) \
or run pg_upgrade (old and new binaries on one data directory, e.g. pg_upgrade --link), and only then set versions.postgres to $MAJOR. \
Nothing was changed."
fi
echo "$CONTAINER: $VOLUME holds a Postgres $MAJOR data directory; $IMAGE can use it"
