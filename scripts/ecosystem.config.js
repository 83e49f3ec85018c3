// scripts/ecosystem.config.js: how PM2 runs the three moviestream services
// (used by scripts/deploy-app.sh and scripts/down.sh).
// Why: one description of each process. The binaries run from the repository
// root so they find .env; configuration is never copied here: each service
// reads the file named by ENV_FILE, and a variable set in its process
// environment wins over the file. Stop is graceful: PM2 sends SIGINT and
// sends SIGKILL only after kill_timeout. Crashes restart with exponential
// backoff instead of a hot loop.
'use strict';

const path = require('path');

const root = path.resolve(__dirname, '..');
// Same rule as scripts/lib.sh: ENV_FILE from the environment, else root .env.
const envFile = process.env.ENV_FILE
  ? path.resolve(process.env.ENV_FILE)
  : path.join(root, '.env');

const app = (service) => ({
  name: `${service}_app`,
  script: path.join(root, 'bin', service),
  interpreter: 'none',
  exec_mode: 'fork',
  instances: 1,
  cwd: root,
  autorestart: true,
  exp_backoff_restart_delay: 100,
  kill_timeout: 30000,
  env: { ENV_FILE: envFile },
});

module.exports = {
  apps: ['gateway', 'inventory', 'billing'].map(app),
};
