# shellcheck shell=sh
# Removes what swarm-deploy-user.sh installed: the key, the sudo rule, the forced command and the user.
# Inputs: SERVER, DEPLOY_USER, DEPLOY_HOME, WRAPPER, SUDOERS_FILE.
. ./root-lib.sh

need_root "to remove the deploy user $DEPLOY_USER"
step "removing the deploy key, the sudo rule and $WRAPPER"
as_root rm -f "$DEPLOY_HOME/.ssh/authorized_keys" "$SUDOERS_FILE" "$SUDOERS_FILE.new" "$WRAPPER" "$WRAPPER.new"
if id "$DEPLOY_USER" >/dev/null 2>&1; then
  step "removing user $DEPLOY_USER"
  as_root userdel "$DEPLOY_USER"
fi
as_root rm -rf "$DEPLOY_HOME"
