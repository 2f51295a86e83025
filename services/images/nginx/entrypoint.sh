#!/bin/sh
set -eu
defined=$(env | cut -d= -f1 | sed 's/^/${/; s/$/}/' | tr '\n' ' ')
for template in /etc/nginx/templates/*.template; do
    [ -e "$template" ] || continue
    output="/etc/nginx/conf.d/$(basename "$template" .template)"
    envsubst "$defined" < "$template" > "$output"
done
for script in /docker-entrypoint.d/*.sh; do
    [ -e "$script" ] || continue
    sh "$script"
done
exec "$@"
