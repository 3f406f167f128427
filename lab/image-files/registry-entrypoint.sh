#!/bin/sh
# The entry point of the lab's registry image (lab/image-files/registry.Dockerfile), as the official
# image's: a config file means `registry serve` with it; a registry command runs with `registry`.
set -e
case "${1:-}" in
  *.yaml | *.yml) set -- registry serve "$@" ;;
  serve | garbage-collect | help | -*) set -- registry "$@" ;;
esac
exec "$@"
