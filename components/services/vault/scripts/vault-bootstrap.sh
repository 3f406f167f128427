# shellcheck shell=sh
# Vault's bootstrap on the application server (components/services/vault/component.py), ACTION=init or ACTION=unseal.
#
# init: initialise Vault once. The init output (unseal keys, root token) is written atomically, inside
#   the container, to a root-only 0600 file on the recovery volume before anything else happens, so a
#   run that dies before Pulumi saved the output leaves it where the next run's init finds it. Its
#   stdout is the init JSON (a Pulumi secret), printed as its very last act.
# unseal: unseal with the keys on stdin (one per line) when Vault is sealed, and wait until it is the
#   active node (writes succeed); then, the keys having come from the stack's state, delete the kept
#   init output when it holds the same keys.
#
# Inputs: ACTION, CONTAINER, BINARY (vault or bao), KEY_SHARES, KEY_THRESHOLD, RECOVERY_DIR (in the
# container), STATUS_ATTEMPTS, STATUS_INTERVAL_SECONDS. Nothing secret is ever an argument or printed
# to stderr.

kept="$RECOVERY_DIR/init.json"
cli() { docker exec "$CONTAINER" "$BINARY" "$@"; }
as_container_root() { docker exec -u 0 "$CONTAINER" "$@"; }

# Leaves `$BINARY status -format=json` in $status: exit 0 unsealed, 2 sealed or uninitialised, 1 unreachable.
wait_for_status() {
  step "waiting for $BINARY in container $CONTAINER to answer"
  tries=0
  while :; do
    rc=0
    status=$(cli status -format=json 2>/dev/null) || rc=$?
    case "$rc" in 0|2) break ;; esac
    tries=$((tries + 1))
    [ "$tries" -lt "$STATUS_ATTEMPTS" ] \
      || fail "vault is unreachable: 'docker exec $CONTAINER $BINARY status' failed $STATUS_ATTEMPTS times over $((STATUS_ATTEMPTS * STATUS_INTERVAL_SECONDS))s (last exit $rc); check 'docker ps -a --filter name=$CONTAINER' and 'docker logs $CONTAINER'"
    sleep "$STATUS_INTERVAL_SECONDS"
  done
}

initialised() { printf '%s' "$status" | grep -Eq '"initialized": *true'; }
unsealed() { printf '%s' "$status" | grep -Eq '"sealed": *false'; }
# Active: the node that serves writes (raft's leader). A node is unsealed a moment before raft elects it,
# and until then every write (a mount, a policy) fails with "internal error".
active() { printf '%s' "$status" | grep -Eq '"is_self": *true|"ha_enabled": *false'; }

# The kept file is whole init output: a root token and at least one unseal key (grep, not a parser:
# the image has no jq; the program parses the JSON and says so if it is not).
check_kept() {
  step "checking the init output kept in $CONTAINER:$kept"
  # shellcheck disable=SC2016 # expanded by the shell in the container
  as_container_root sh -c 'tr -d " \n" < "$1" | grep -Eq "\"root_token\":\"[^\"]+\"" && tr -d " \n" < "$1" | grep -q "\"unseal_keys_b64\":\[\""' check "$kept" \
    || fail "the init output kept in $CONTAINER:$kept is empty or malformed (no root_token or unseal_keys_b64). Vault may be initialised with keys nobody holds: if it is, wipe its data volume (README, Vault) or import keys you hold with 'pulumi config set --secret vaultInit'"
}

init() {
  wait_for_status
  if initialised; then
    step "looking for init output kept by an interrupted run"
    # A run killed between writing the output and renaming it left only the new file.
    # shellcheck disable=SC2016 # expanded by the shell in the container
    as_container_root sh -c '[ -e "$1" ] || [ ! -s "$1.new" ] || mv "$1.new" "$1"' finish "$kept"
    if as_container_root test -e "$kept"; then
      check_kept
      echo "$SAMARTH_SCRIPT: vault was initialised by a run that ended before saving its keys; recovered them from $CONTAINER:$kept" >&2
      as_container_root cat "$kept"
      exit 0
    fi
    fail "vault in container $CONTAINER is already initialised, but this stack holds no init output for it. To manage it, import its keys: save the output of '$BINARY operator init -format=json' (at least unseal_keys_b64 and root_token) as init.json and run 'pulumi config set --secret vaultInit < init.json', then 'pulumi up' again"
  fi
  step "initialising vault ($KEY_SHARES key shares, threshold $KEY_THRESHOLD), keeping the output in $CONTAINER:$kept"
  # Written and renamed inside the container: the keys never pass through this script before they are kept.
  # shellcheck disable=SC2016 # expanded by the shell in the container
  as_container_root sh -c 'umask 077 && mkdir -p "$1" && chmod 700 "$1" \
    && "$2" operator init -format=json -key-shares="$3" -key-threshold="$4" > "$1/init.json.new" \
    && mv "$1/init.json.new" "$1/init.json"' init "$RECOVERY_DIR" "$BINARY" "$KEY_SHARES" "$KEY_THRESHOLD" \
    || fail "'$BINARY operator init' failed; see its error above and 'docker logs $CONTAINER'"
  check_kept
  as_container_root cat "$kept"
}

unseal() {
  step "reading the unseal keys from stdin"
  keys=$(cat)
  [ -n "$keys" ] || fail "no unseal keys on stdin"
  wait_for_status
  initialised \
    || fail "vault in container $CONTAINER is not initialised, yet this stack holds unseal keys: its data volume was replaced; restore the volume, or initialise anew by removing the init record (pulumi state unprotect, then pulumi state delete, on its application-vault-init resource; README, Vault)"
  if ! unsealed; then
    step "unsealing vault"
    set -f
    for key in $keys; do
      printf '%s' "$key" | docker exec -i "$CONTAINER" "$BINARY" write -format=json sys/unseal key=- >/dev/null \
        || fail "vault in container $CONTAINER rejected an unseal key"
      status=$(cli status -format=json 2>/dev/null) || true
      if unsealed; then break; fi
    done
    set +f
    unsealed \
      || fail "vault in container $CONTAINER is still sealed after every unseal key this stack holds: they are not this Vault's keys (was it rekeyed outside Pulumi? see README, Vault, rotation)"
  fi
  wait_active
  forget_kept
}

wait_active() {
  step "waiting for vault in container $CONTAINER to become the active node"
  tries=0
  until active; do
    tries=$((tries + 1))
    [ "$tries" -lt "$STATUS_ATTEMPTS" ] \
      || fail "vault in container $CONTAINER is unsealed but not the active node after $((STATUS_ATTEMPTS * STATUS_INTERVAL_SECONDS))s, so nothing can be written to it: check raft in 'docker logs $CONTAINER'"
    sleep "$STATUS_INTERVAL_SECONDS"
    status=$(cli status -format=json 2>/dev/null) || true
  done
}

# These keys came from the stack's state (the unseal runs after the init's output was saved there), so
# a kept file holding the same keys is no longer needed. One that holds other keys stays, and is reported.
forget_kept() {
  step "looking for init output kept on the recovery volume"
  as_container_root test -e "$kept" || return 0
  held=$(as_container_root cat "$kept")
  set -f
  for key in $keys; do
    case "$held" in
      *"\"$key\""*) ;;
      *)
        echo "$SAMARTH_SCRIPT: $CONTAINER:$kept holds other keys than this stack; left in place for the operator" >&2
        return 0
        ;;
    esac
  done
  set +f
  step "removing the kept init output, now in the stack's state"
  as_container_root rm -f "$kept"
}

case "$ACTION" in
  init) init ;;
  unseal) unseal ;;
  *) fail "ACTION must be init or unseal, not '$ACTION'" ;;
esac
