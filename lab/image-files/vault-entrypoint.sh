#!/bin/sh
# The entry point of the lab's Vault image (lab/image-files/vault.Dockerfile), as the official image's:
# options or `server` mean the vault command (`server` with /vault/config and the dev-mode settings); for
# the vault command, /vault/config, /vault/logs and /vault/file go to the vault user when it does not own
# them (unless SKIP_CHOWN), and a root container runs it as vault. Not done: setcap for mlock (the
# program's config disables mlock; OpenBao has none) and the *_INTERFACE address helpers.
set -e
if [ -n "${VAULT_LOCAL_CONFIG:-}" ]; then
  printf '%s\n' "$VAULT_LOCAL_CONFIG" >/vault/config/local.json
fi
case "${1:-}" in
  -*) set -- vault "$@" ;;
  server)
    shift
    set -- vault server -config=/vault/config -dev-root-token-id="${VAULT_DEV_ROOT_TOKEN_ID:-}" \
      -dev-listen-address="${VAULT_DEV_LISTEN_ADDRESS:-0.0.0.0:8200}" "$@"
    ;;
  version) set -- vault "$@" ;;
esac
# Vault's API audit devices, which OpenBao allows only when its config says so (vault-api-audit.hcl).
if [ "${1:-}" = vault ] && [ "${2:-}" = server ]; then
  shift 2
  set -- vault server -config=/etc/vault-api-audit.hcl "$@"
fi
if [ "${1:-}" = vault ]; then
  if [ -z "${SKIP_CHOWN:-}" ]; then
    for directory in /vault/config /vault/logs /vault/file; do
      if [ "$(stat -c %u "$directory")" != "$(id -u vault)" ]; then
        chown -R vault:vault "$directory"
      fi
    done
  fi
  if [ "$(id -u)" = 0 ]; then
    set -- setpriv --reuid=vault --regid=vault --init-groups "$@"
  fi
fi
exec "$@"
