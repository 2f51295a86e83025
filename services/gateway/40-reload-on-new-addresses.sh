#!/bin/sh
# Run by the nginx image's entrypoint before nginx starts (official nginx images and our local
# one both run /docker-entrypoint.d/*.sh). nginx resolves an upstream's name once, at start: when
# compose recreates a service's container, it gets a new address and nginx would go on sending to
# the old one. This watcher looks the services' names up every few seconds and reloads nginx when
# an address changed (a reload re-resolves them, without dropping a connection).
names=""
for address in "$USER_SERVICE" "$PRODUCT_SERVICE" "$ORDER_SERVICE" "$INVENTORY_SERVICE"; do
    names="$names ${address%:*}"
done
(
    look_up() { for name in $names; do getent hosts "$name" | awk '{print $1}'; done; }
    last=$(look_up)
    while sleep "${RESOLVE_EVERY:-3}"; do
        now=$(look_up)
        if [ -n "$now" ] && [ "$now" != "$last" ]; then
            echo "reload-on-new-addresses: service addresses changed; reloading nginx" >&2
            nginx -s reload || true
            last=$now
        fi
    done
) &
