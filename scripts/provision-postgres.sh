#!/usr/bin/env bash
# scripts/provision-postgres.sh <inventory|billing|test>...
# Install PostgreSQL if missing, start it if stopped, then create or update
# the login role of each name given, from .env:
#   inventory  INVENTORY_DB_USER / INVENTORY_DB_PASSWORD, owner of INVENTORY_DB_NAME
#   billing    BILLING_DB_USER / BILLING_DB_PASSWORD, owner of BILLING_DB_NAME
#   test       TEST_DB_USER / TEST_DB_PASSWORD with CREATEDB and no database
#              (every test creates and drops its own database)
# It also checks that the server listens on loopback only and asks for
# scram-sha-256 passwords over TCP (Debian's defaults); passwords are always
# stored as scram-sha-256 secrets.
# Why: .env is the single source of truth. Running again resets passwords,
# attributes and database ownership to what .env says. The roles are never
# superusers. Admin SQL runs as the postgres OS user over the unix socket;
# passwords reach psql as psql variables on stdin, never on a command line.
# A private server (scripts/test-topology.sh) is named by
# MOVIESTREAM_PG_ADMIN_SOCKET (its socket directory) and, optionally,
# MOVIESTREAM_PG_ADMIN_PORT; its caller runs it, so nothing is installed or
# started then.
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

pg_socket_dir=${MOVIESTREAM_PG_ADMIN_SOCKET:-}
pg_port=${MOVIESTREAM_PG_ADMIN_PORT:-}
pg_conn=(-h "${pg_socket_dir:-/var/run/postgresql}")
[[ -z $pg_port ]] || pg_conn+=(-p "$pg_port")

# pg_admin [PSQL_ARGS...]: psql as the postgres superuser over the local
# unix socket; SQL on stdin unless PSQL_ARGS say otherwise.
pg_admin() {
  (cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 \
    "${pg_conn[@]}" -U postgres -d postgres "$@")
}

if [[ -n $pg_socket_dir ]]; then
  wait_for 60 quiet pg_isready "${pg_conn[@]}" ||
    die "no PostgreSQL accepts connections at $pg_socket_dir after 60 s"
else
  apt_install postgresql
  start_postgres
fi

# check_server: loopback-only listening and scram-sha-256 (or reject) on
# every TCP line of pg_hba.conf. With one role per host (vms) anything else
# is an error; on one host only a warning, because that server may be shared
# with other projects and is not reconfigured here.
check_server() {
  local listen item weak
  local -a items problems=()
  listen=$(pg_admin -At -c 'SHOW listen_addresses')
  IFS=, read -ra items <<<"$listen"
  for item in "${items[@]}"; do
    item=${item//[[:space:]]/}
    case $item in
      localhost | 127.0.0.1 | ::1 | '') ;;
      *)
        problems+=("listen_addresses='$listen' reaches beyond loopback")
        break
        ;;
    esac
  done
  weak=$(pg_admin -At -c "SELECT string_agg(DISTINCT auth_method, ',') FROM pg_hba_file_rules
    WHERE type LIKE 'host%' AND auth_method NOT IN ('scram-sha-256', 'reject')")
  [[ -z $weak ]] || problems+=("pg_hba.conf has TCP lines with auth method(s) $weak")
  if ((${#problems[@]} == 0)); then
    log "server listens on '$listen' only, scram-sha-256 on TCP"
  elif [[ $(topology) == vms ]]; then
    die "${problems[*]}; expected listen_addresses = 'localhost' and scram-sha-256 (Debian's defaults)"
  else
    log "warning: ${problems[*]} (shared server left as it is)"
  fi
}
check_server

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
SET password_encryption = 'scram-sha-256';
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
