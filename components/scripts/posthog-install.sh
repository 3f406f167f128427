# shellcheck shell=sh
# PostHog (posthog-deploy) at REF: compose-lib.sh's install, then validate, pull and start.
# Inputs: compose-lib.sh's.
. ./compose-lib.sh
compose_prepare
step "validating the compose configuration (needs Docker Compose 2.24.4 or newer)"
dc config --quiet
step "pulling the pinned PostHog images"
dc pull --quiet
step "starting PostHog"
dc up --detach --remove-orphans
compose_record
