#!/bin/bash
# redis-server with protected mode off (the compose network is the boundary), else the
# command as given.
if [ "${1:-}" = redis-server ]; then
    shift
    # after the arguments: a config file, when given, must come first
    exec redis-server "$@" --protected-mode no
fi
exec "$@"
