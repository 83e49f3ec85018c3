// scripts/ecosystem.config.js: how PM2 runs the three moviestream services
// (used by scripts/deploy-app.sh and scripts/down.sh), and Prometheus where
// scripts/provision-prometheus.sh set it up (prometheus_app, at the end).
// Why: one description of each process. The binaries run from the repository
// root so they find .env; configuration is never copied here: each service
// reads the file named by ENV_FILE, and a variable set in its process
// environment wins over the file. Stop is graceful: PM2 sends SIGINT and
// sends SIGKILL only after kill_timeout. Crashes restart with exponential
// backoff instead of a hot loop. The services run as the unprivileged system
// user moviestream (uid/gid: PM2's daemon is root's, so `sudo pm2 list`
// still shows them), which can read .env and the binaries and write nothing
// in the repository (scripts/deploy-app.sh, docs/security.md).
//
// Per-host overrides: when one role runs per host (the Vagrant VMs, or the
// namespaces of scripts/test-topology.sh), the role script writes the few
// addresses that differ from .env (for example RABBITMQ_ADDRS on gateway-vm)
// to <MOVIESTREAM_HOST_DIR or /etc/moviestream>/<service>.env, outside the
// repository. They are read here into the process environment, so they win
// over .env; a secret-looking key there is an error, because secrets live in
// .env only. Without that file a service runs on .env alone (make up).
'use strict';

const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
// Same rules as scripts/lib.sh: ENV_FILE from the environment, else root .env;
// binaries in MOVIESTREAM_BIN_DIR, else bin/; overrides in MOVIESTREAM_HOST_DIR.
const envFile = process.env.ENV_FILE
  ? path.resolve(process.env.ENV_FILE)
  : path.join(root, '.env');
const binDir = process.env.MOVIESTREAM_BIN_DIR
  ? path.resolve(process.env.MOVIESTREAM_BIN_DIR)
  : path.join(root, 'bin');
const hostDir = process.env.MOVIESTREAM_HOST_DIR
  ? path.resolve(process.env.MOVIESTREAM_HOST_DIR)
  : '/etc/moviestream';

const secretKey = /PASSWORD|SECRET|TOKEN|COOKIE|_KEY$/;

// hostEnv reads the KEY=VALUE lines of the service's override file; a
// missing file means no overrides.
const hostEnv = (service) => {
  const file = path.join(hostDir, `${service}.env`);
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if (err.code === 'ENOENT') return {};
    throw err;
  }
  const env = {};
  for (const line of text.split(/\r?\n/)) {
    if (/^\s*(#|$)/.test(line)) continue;
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) throw new Error(`${file}: not KEY=VALUE: ${line}`);
    if (secretKey.test(m[1])) {
      throw new Error(`${file}: ${m[1]} looks like a secret; secrets stay in .env`);
    }
    env[m[1]] = m[2].trim();
  }
  return env;
};

// Billing may run several processes on a host (BILLING_INSTANCES of .env,
// 1 to 16, passed as MOVIESTREAM_BILLING_INSTANCES by scripts/deploy-app.sh,
// since no variable of .env reaches PM2); PM2 numbers them in
// BILLING_INSTANCE, and each serves health on BILLING_HEALTH_PORT plus its
// number. The other services run one.
const instances = (service) => {
  if (service !== 'billing') return 1;
  const v = process.env.MOVIESTREAM_BILLING_INSTANCES || '1';
  const n = Number(v);
  if (!/^[0-9]+$/.test(v) || n < 1 || n > 16) {
    throw new Error(`BILLING_INSTANCES=${v}: want a number from 1 to 16`);
  }
  return n;
};

const app = (service) => ({
  name: `${service}_app`,
  script: path.join(binDir, service),
  interpreter: 'none',
  exec_mode: 'fork',
  instances: instances(service),
  instance_var: `${service.toUpperCase()}_INSTANCE`,
  // The binary's directory: readable by the services' user even where the
  // checkout is not (scripts/deploy-app.sh); .env is found through ENV_FILE.
  cwd: binDir,
  uid: 'moviestream',
  gid: 'moviestream',
  autorestart: true,
  exp_backoff_restart_delay: 100,
  kill_timeout: 30000,
  env: { ...hostEnv(service), ENV_FILE: envFile },
});

// Prometheus (scripts/provision-prometheus.sh), on the host that runs it:
// Debian's /usr/bin/prometheus as the package's `prometheus` user (setpriv
// execs it, so PM2's signals reach Prometheus itself). Its command line is
// generated from .env into its state directory (prometheus.args, one
// argument a line), so this file still reads no configuration; without that
// file (a host without Prometheus) there is no prometheus_app. The state
// directory follows the script's rule: MOVIESTREAM_PROMETHEUS_DIR, else
// <MOVIESTREAM_HOST_DIR>/prometheus when that is set, else
// /var/lib/moviestream/prometheus.
const promDir = process.env.MOVIESTREAM_PROMETHEUS_DIR
  ? path.resolve(process.env.MOVIESTREAM_PROMETHEUS_DIR)
  : process.env.MOVIESTREAM_HOST_DIR
    ? path.join(hostDir, 'prometheus')
    : '/var/lib/moviestream/prometheus';

const prometheusApps = () => {
  let text;
  try {
    text = fs.readFileSync(path.join(promDir, 'prometheus.args'), 'utf8');
  } catch (err) {
    if (err.code === 'ENOENT') return [];
    throw err;
  }
  const args = text.split(/\r?\n/).filter((line) => line !== '');
  return [{
    name: 'prometheus_app',
    script: '/usr/bin/setpriv',
    args: ['--reuid=prometheus', '--regid=prometheus', '--init-groups', '--', '/usr/bin/prometheus', ...args],
    interpreter: 'none',
    exec_mode: 'fork',
    instances: 1,
    cwd: promDir,
    autorestart: true,
    exp_backoff_restart_delay: 100,
    kill_timeout: 30000,
  }];
};

module.exports = {
  apps: [...['gateway', 'inventory', 'billing'].map(app), ...prometheusApps()],
};
