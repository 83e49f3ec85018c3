#!/usr/bin/env bash
# scripts/provision-postgres.sh <inventory|billing|test>...
# Install PostgreSQL if missing, start it if stopped, then create or update
# the login role of each name given, from .env:
#   inventory  INVENTORY_DB_USER / INVENTORY_DB_PASSWORD, owner of INVENTORY_DB_NAME
#   billing    BILLING_DB_USER / BILLING_DB_PASSWORD, owner of BILLING_DB_NAME
#   test       TEST_DB_USER / TEST_DB_PASSWORD with CREATEDB and no database
#              (every test creates and drops its own database)
# Why: .env is the single source of truth. Running again resets passwords,
# attributes and database ownership to what .env says. The roles are never
# superusers. Admin SQL runs as the postgres OS user over the unix socket;
# passwords reach psql as psql variables on stdin, never on a command line.
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$here/lib.sh"

usage() {
  echo "usage: ${0##*/} <inventory|billing|test>..." >&2
  exit 2
}
(($# > 0)) || usage
for name in "$@"; do
  case $name in
    inventory | billing | test) ;;
    *) usage ;;
  esac
done

require_root
load_env
apt_install postgresql
start_postgres

# pg_admin: psql as the postgres superuser over the local unix socket.
pg_admin() {
  (cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 \
    -h /var/run/postgresql -U postgres -d postgres)
}

# psql_arg VALUE: VALUE quoted as a single-quoted psql meta-command argument.
psql_arg() {
  local v=$1
  v=${v//\\/\\\\}
  v=${v//\'/\\\'}
  printf "'%s'" "$v"
}

# provision_role USER PASSWORD CREATEDB|NOCREATEDB [DATABASE]
provision_role() {
  local user=$1 password=$2 createdb=$3 db=${4:-} value
  for value in "$user" "$password" "$db"; do
    [[ $value != *$'\n'* ]] || die "role $user: a value from .env contains a newline"
  done
  {
    printf '\\set role_name %s\n' "$(psql_arg "$user")"
    printf '\\set role_password %s\n' "$(psql_arg "$password")"
    printf '\\set role_createdb %s\n' "$createdb"
    printf '\\set db_name %s\n' "$(psql_arg "$db")"
    cat <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'role_name')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role_name') \gexec
ALTER ROLE :"role_name" WITH LOGIN NOSUPERUSER NOCREATEROLE NOREPLICATION NOBYPASSRLS
  :role_createdb PASSWORD :'role_password';
SQL
    if [[ -n $db ]]; then
      cat <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'db_name', :'role_name')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db_name') \gexec
ALTER DATABASE :"db_name" OWNER TO :"role_name";
SQL
    fi
  } | pg_admin
  if [[ -n $db ]]; then
    log "role $user ($createdb) ready, owner of database $db"
  else
    log "role $user ($createdb) ready"
  fi
}

for name in "$@"; do
  case $name in
    inventory)
      require_env INVENTORY_DB_USER INVENTORY_DB_PASSWORD INVENTORY_DB_NAME
      provision_role "$INVENTORY_DB_USER" "$INVENTORY_DB_PASSWORD" NOCREATEDB "$INVENTORY_DB_NAME"
      ;;
    billing)
      require_env BILLING_DB_USER BILLING_DB_PASSWORD BILLING_DB_NAME
      provision_role "$BILLING_DB_USER" "$BILLING_DB_PASSWORD" NOCREATEDB "$BILLING_DB_NAME"
      ;;
    test)
      require_env TEST_DB_USER TEST_DB_PASSWORD
      provision_role "$TEST_DB_USER" "$TEST_DB_PASSWORD" CREATEDB
      ;;
  esac
done
