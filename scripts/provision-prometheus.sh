#!/usr/bin/env bash
# scripts/provision-prometheus.sh: install Prometheus (Debian's `prometheus`
# package, with promtool) if missing, keep Debian's own prometheus service
# stopped and disabled, generate prometheus.yml from .env, copy in the alert
# rules of deploy/prometheus/, and start or restart prometheus_app in root's
# PM2 on 127.0.0.1:PROMETHEUS_PORT; returns once /-/ready answers.
#
# It scrapes every 5 s: gateway and inventory on their admin listeners
# (GATEWAY_ADMIN_ADDR, INVENTORY_ADMIN_ADDR), billing on BILLING_HEALTH_PORT,
# RabbitMQ's rabbitmq_prometheus plugin on RABBITMQ_PROMETHEUS_PORT (node
# metrics, and per-queue ones for RABBITMQ_QUEUE and its .dlq), and itself.
# Prometheus runs on the billing host, next to RabbitMQ: billing and RabbitMQ
# are local; with one role per host (MOVIESTREAM_TOPOLOGY=vms) the gateway
# and inventory are scraped at GATEWAY_VM_IP and INVENTORY_VM_IP.
#
# State (generated, outside the repository, owned by the package's
# `prometheus` user, which the process runs as): MOVIESTREAM_PROMETHEUS_DIR,
# by default /var/lib/moviestream/prometheus, or <MOVIESTREAM_HOST_DIR>/prometheus
# when a private host directory is set (scripts/test-topology.sh), so that
# such a host never shares the machine's TSDB. scripts/ecosystem.config.js
# applies the same rule. It holds prometheus.yml, rules/ (a copy of the rules
# checked by promtool, so a broken edit never reaches the running server),
# prometheus.args (the command line PM2 runs) and data/ (TSDB, 7 days).
# Nothing there is secret: the scrapes need no credentials.
#
# Why: one idempotent step, run by scripts/role-billing.sh (so by `make up`
# and on billing-vm); running it again regenerates the files and restarts
# prometheus_app, keeping its data.
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$here/lib.sh"

require_root
load_env
mode=$(topology)
require_env PROMETHEUS_PORT RABBITMQ_PROMETHEUS_PORT BILLING_HEALTH_PORT GATEWAY_ADMIN_ADDR \
  INVENTORY_ADMIN_ADDR RABBITMQ_VHOST RABBITMQ_QUEUE
command -v pm2 >/dev/null || die "pm2 not found: run scripts/provision-common.sh"

rules_src=$REPO_ROOT/deploy/prometheus/alerts.yml
if [[ -n ${MOVIESTREAM_PROMETHEUS_DIR:-} ]]; then
  state=$MOVIESTREAM_PROMETHEUS_DIR
elif [[ -n ${MOVIESTREAM_HOST_DIR:-} ]]; then
  state=$MOVIESTREAM_HOST_DIR/prometheus
else
  state=/var/lib/moviestream/prometheus
fi
state=$(realpath -m -- "$state")
listen=127.0.0.1:$PROMETHEUS_PORT

# Values that go into YAML unquoted-safe: ports, host:port, plain names.
port_re='^[0-9]{1,5}$' name_re='^[A-Za-z0-9_.-]+$'
for key in PROMETHEUS_PORT RABBITMQ_PROMETHEUS_PORT BILLING_HEALTH_PORT; do
  [[ ${!key} =~ $port_re ]] || die "$key=${!key}: not a port number"
done
for key in GATEWAY_ADMIN_ADDR INVENTORY_ADMIN_ADDR; do
  [[ ${!key} =~ ^[A-Za-z0-9.-]+:[0-9]{1,5}$ ]] || die "$key=${!key}: expected host:port"
done
for key in RABBITMQ_VHOST RABBITMQ_QUEUE; do
  [[ ${!key} =~ $name_re ]] || die "$key=${!key}: only letters, digits, _ . - are supported here"
done
grep -qF "queue=\"$RABBITMQ_QUEUE\"" "$rules_src" ||
  die "RABBITMQ_QUEUE=$RABBITMQ_QUEUE but the rules in ${rules_src#"$REPO_ROOT"/} are written for another queue: update them"

# Relabel regex (anchored by Prometheus): the queue and its .dlq.
queue_re="${RABBITMQ_QUEUE//./\\.}(\\.dlq)?"
gateway_target=$GATEWAY_ADMIN_ADDR
inventory_target=$INVENTORY_ADMIN_ADDR
if [[ $mode == vms ]]; then
  require_env GATEWAY_VM_IP INVENTORY_VM_IP
  gateway_target=$GATEWAY_VM_IP:${GATEWAY_ADMIN_ADDR##*:}
  inventory_target=$INVENTORY_VM_IP:${INVENTORY_ADMIN_ADDR##*:}
fi
# Billing's processes on this host (BILLING_INSTANCES): one target each,
# on BILLING_HEALTH_PORT and the ports after it.
[[ ${BILLING_INSTANCES:-1} =~ ^([1-9]|1[0-6])$ ]] || die "BILLING_INSTANCES=$BILLING_INSTANCES: want a number from 1 to 16"
billing_targets=
for ((i = 0; i < ${BILLING_INSTANCES:-1}; i++)); do
  billing_targets+="${billing_targets:+, }'127.0.0.1:$((BILLING_HEALTH_PORT + i))'"
done

apt_install prometheus curl

# Debian's package ships its own service (systemd unit and init script, on
# 0.0.0.0:9090 with /etc/prometheus/prometheus.yml), which its postinst may
# have started. prometheus_app replaces it: keep it stopped and disabled.
if have_systemd; then
  if quiet systemctl is-enabled prometheus.service || quiet systemctl is-active prometheus.service; then
    log "stopping and disabling Debian's prometheus.service (prometheus_app in PM2 replaces it)"
    systemctl disable --now prometheus.service
  fi
else
  if [[ -x /etc/init.d/prometheus ]] && quiet /etc/init.d/prometheus status; then
    log "stopping Debian's /etc/init.d/prometheus (prometheus_app in PM2 replaces it)"
    /etc/init.d/prometheus stop
  fi
  # Not at boot either, should this host ever boot with sysvinit or systemd.
  quiet update-rc.d prometheus disable || true
  quiet deb-systemd-helper disable prometheus.service || true
fi

# Generate everything in a staging directory, check it with promtool, then
# move it into place.
mkdir -p -- "$state/data"
stage=$(mktemp -d "$state/.stage.XXXXXX")
trap 'rm -rf -- "$stage"' EXIT
mkdir -p -- "$stage/rules"
cp -- "$rules_src" "$stage/rules/alerts.yml"

cat >"$stage/prometheus.yml" <<EOF
# Generated by scripts/provision-prometheus.sh from .env (topology: $mode).
# Do not edit: run the script again. Rules: deploy/prometheus/ in the repository.
global:
  scrape_interval: 5s
  scrape_timeout: 4s
  evaluation_interval: 5s

rule_files:
  - rules/*.yml

scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['$listen']
  - job_name: gateway
    static_configs:
      - targets: ['$gateway_target']
  - job_name: inventory
    static_configs:
      - targets: ['$inventory_target']
  - job_name: billing
    static_configs:
      - targets: [$billing_targets]
  # rabbitmq_prometheus: node-wide metrics (aggregated).
  - job_name: rabbitmq
    static_configs:
      - targets: ['127.0.0.1:$RABBITMQ_PROMETHEUS_PORT']
  # rabbitmq_prometheus per queue (rabbitmq_detailed_queue_messages_ready,
  # _messages_unacked, _messages, _consumers; labels vhost, queue), only for
  # the billing queue and its dead-letter queue.
  - job_name: rabbitmq_queues
    metrics_path: /metrics/detailed
    params:
      vhost: ['$RABBITMQ_VHOST']
      family: [queue_coarse_metrics, queue_consumer_count]
    static_configs:
      - targets: ['127.0.0.1:$RABBITMQ_PROMETHEUS_PORT']
    metric_relabel_configs:
      - source_labels: [queue]
        regex: '$queue_re'
        action: keep
EOF

printf '%s\n' \
  "--config.file=$state/prometheus.yml" \
  "--storage.tsdb.path=$state/data" \
  "--storage.tsdb.retention.time=7d" \
  "--web.listen-address=$listen" \
  >"$stage/prometheus.args"

log "checking the configuration and rules with promtool"
promtool check config "$stage/prometheus.yml" >/dev/null ||
  die "promtool check config failed for the generated configuration (see above)"

rm -rf -- "$state/rules"
mv -- "$stage/rules" "$state/rules"
mv -f -- "$stage/prometheus.yml" "$state/prometheus.yml"
mv -f -- "$stage/prometheus.args" "$state/prometheus.args"
chmod 0644 "$state/prometheus.yml" "$state/prometheus.args" "$state"/rules/*
chmod 0755 "$state" "$state/rules"
chown -R prometheus:prometheus "$state"
log "wrote $state/prometheus.yml (targets: gateway $gateway_target, inventory $inventory_target, billing $billing_targets, rabbitmq 127.0.0.1:$RABBITMQ_PROMETHEUS_PORT)"

# The port must be free for our process, or held by it already.
if ! quiet pm2_run describe prometheus_app && http_ok "http://$listen/-/ready"; then
  die "something other than prometheus_app answers on $listen: stop it or change PROMETHEUS_PORT"
fi
log "starting or restarting prometheus_app"
MOVIESTREAM_PROMETHEUS_DIR=$state pm2_run startOrRestart "$SCRIPTS_DIR/ecosystem.config.js" \
  --only prometheus_app --update-env
pm2_run save

wait_http "http://$listen/-/ready" 60 ||
  die "Prometheus is not ready on $listen after 60 s; see: pm2 logs prometheus_app"
# Ready, and it is ours: the server on that port runs our configuration.
curl -fsS --max-time 5 "http://$listen/api/v1/status/flags" | grep -qF "\"config.file\":\"$state/prometheus.yml\"" ||
  die "the Prometheus on $listen does not run $state/prometheus.yml"
log "prometheus_app ready on http://$listen (targets: http://$listen/targets)"
