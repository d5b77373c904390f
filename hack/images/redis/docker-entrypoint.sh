#!/bin/sh
# The official redis image's command-line interface on Debian's redis-server:
#   IMAGE                          redis-server, protected mode off
#   IMAGE --requirepass s3cret     redis-server --requirepass s3cret (options alone)
#   IMAGE /etc/redis/my.conf ...   redis-server with that config file first
#   IMAGE redis-cli ...            any other command, as given
# Then exec, so redis-server is PID 1 and gets SIGTERM itself (it saves and exits cleanly).
set -eu

case "${1:-}" in
  -* | *.conf) set -- redis-server "$@" ;;
esac

# Debian builds redis-server with protected mode on: without a password it refuses every client
# not on loopback, and from inside a container every other pod is such a client. The official
# image is built with it off. Later options (`--protected-mode yes`) still win; a config file,
# which must come first, decides for itself.
if [ "${1:-}" = redis-server ]; then
  case "${2:-}" in
    "" | -*) shift; set -- redis-server --protected-mode no "$@" ;;
  esac
fi

# The data files (AOF, RDB) hold the queues: readable by redis alone, as in the official image.
umask 0077
exec "$@"
