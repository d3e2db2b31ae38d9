#!/bin/sh
# Creates or upgrades Temporal's PostgreSQL databases with temporal-sql-tool
# (temporalio/admin-tools). Every step is idempotent: create-database ignores
# an existing database, setup-schema skips a database already past 0.0, and
# update-schema applies only the versions not yet applied. The connection
# comes from SQL_PLUGIN, SQL_HOST, SQL_PORT, SQL_USER and SQL_PASSWORD.
set -eu
: "${SQL_HOST:?}" "${DBNAME:?}" "${VISIBILITY_DBNAME:?}"
schema=/etc/temporal/schema/postgresql/v12

for pair in "$DBNAME:temporal" "$VISIBILITY_DBNAME:visibility"; do
	db=${pair%%:*}
	kind=${pair#*:}
	echo "temporal-schema: $db ($kind schema)"
	temporal-sql-tool --db "$db" create
	temporal-sql-tool --db "$db" setup-schema -v 0.0
	temporal-sql-tool --db "$db" update-schema -d "$schema/$kind/versioned"
done
echo "temporal-schema: done"
