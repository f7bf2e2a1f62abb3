#!/bin/sh
# A sample dvsd membership event script: append one line per event, then the
# JSON document dvsd wrote on standard input, to the log file named by the
# first argument (default /var/log/dvsd-events.log).
#
# Configure it for every event in dvsd.toml:
#
#   [scripts]
#   join = "/usr/local/lib/dvsd/dvsd-event.sh /var/log/dvsd-events.log"
#   leave = "/usr/local/lib/dvsd/dvsd-event.sh /var/log/dvsd-events.log"
#   disconnect = "/usr/local/lib/dvsd/dvsd-event.sh /var/log/dvsd-events.log"
#   partition = "/usr/local/lib/dvsd/dvsd-event.sh /var/log/dvsd-events.log"
#   merge = "/usr/local/lib/dvsd/dvsd-event.sh /var/log/dvsd-events.log"
#   timeout = 30
#
# Every DVSD_* value is a list of plain words (ids, names, "id:how"), so the
# unquoted loops below are safe.  See docs/membership.md for the variables.
set -eu

log=${1:-/var/log/dvsd-events.log}

{
    printf '%s node=%s event=%s changed=[%s] self=%s view=%s previous=%s' \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$DVSD_NODE" "$DVSD_EVENT" \
        "$DVSD_CHANGED" "$DVSD_SELF_CHANGED" "$DVSD_VIEW_ID" \
        "${DVSD_PREVIOUS_VIEW_ID:--}"
    printf ' members=[%s] majority=%s\n' "$DVSD_MEMBERS" "$DVSD_MAJORITY"
    for entry in $DVSD_LEFT_HOW; do
        printf '  left %s (%s)\n' "${entry%%:*}" "${entry#*:}"
    done
    for entry in $DVSD_JOINED_HOW; do
        printf '  joined %s (%s)\n' "${entry%%:*}" "${entry#*:}"
    done
    printf '  json '
    cat
} >> "$log"

case "$DVSD_EVENT" in
    partition)
        if [ "$DVSD_MAJORITY" = 0 ]; then
            echo "node $DVSD_NODE is in a minority partition" >&2
        fi
        ;;
esac
exit 0
