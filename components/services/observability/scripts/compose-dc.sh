# shellcheck shell=sh
# Inputs: ENV_FILE.

# The project's `docker compose`: `.env` is read by compose itself, any other env file is named.
dc() {
  if [ "$ENV_FILE" = .env ]; then
    docker compose "$@"
  else
    docker compose --env-file "$ENV_FILE" "$@"
  fi
}
