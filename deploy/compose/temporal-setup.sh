#!/bin/sh
# Waits until the Temporal cluster at TEMPORAL_ADDRESS is healthy, then
# creates NAMESPACE (if missing) and the search attributes listed in
# SEARCH_ATTRIBUTES as NAME=Type,NAME=Type (existing ones are left alone),
# and waits until the namespace shows them, so the first workflow can
# upsert them. Runs in temporalio/admin-tools (temporal CLI).
set -eu
: "${TEMPORAL_ADDRESS:?}" "${NAMESPACE:?}" "${SEARCH_ATTRIBUTES:?}"
retention=${NAMESPACE_RETENTION:-168h}

# retry WHAT COMMAND...: up to 60 tries, 2 s apart.
retry() {
	what=$1
	shift
	i=1
	until "$@"; do
		if [ "$i" -ge 60 ]; then
			echo "temporal-setup: gave up: $what" >&2
			exit 1
		fi
		i=$((i + 1))
		sleep 2
	done
}

# The temporal CLI with the cluster address (flags may follow the command).
tcli() { temporal "$@" --address "$TEMPORAL_ADDRESS"; }

retry "cluster at $TEMPORAL_ADDRESS healthy" tcli operator cluster health
if ! tcli operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1; then
	retry "create namespace $NAMESPACE" tcli operator namespace create --namespace "$NAMESPACE" --retention "$retention"
fi

set --
names=""
for sa in $(echo "$SEARCH_ATTRIBUTES" | tr ',' ' '); do
	set -- "$@" --name "${sa%%=*}" --type "${sa#*=}"
	names="$names ${sa%%=*}"
done
# The CLI pairs the i-th --name with the i-th --type.
retry "create search attributes" tcli operator search-attribute create --namespace "$NAMESPACE" "$@"

listed() {
	out=$(tcli operator search-attribute list --namespace "$NAMESPACE") || return 1
	for n in $names; do
		echo "$out" | grep -qw "$n" || return 1
	done
}
retry "search attributes visible in $NAMESPACE" listed
echo "temporal-setup: namespace $NAMESPACE has$names"
