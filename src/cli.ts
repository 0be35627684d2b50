#!/usr/bin/env node
// The `online-stats` command: parse arguments, call one function (serve or import).
import { systemClock } from './clock.js';
import { configFromProcess, settingsHelp } from './config.js';
import { ConfigError, DataDirLockedError, ImportError } from './errors.js';

const HELP = `online-stats: how many of your users are online now, and how many were active lately.

Usage:
  online-stats serve [flags]                 run the HTTP service (API, /docs, dashboard)
  online-stats import <users_data.json> [flags]
                                             migrate the FastAPI demo's data file into the
                                             embedded store (idempotent; stop the service first)
  online-stats --help                        this text

Flags (each also read from the environment variable shown; flags win):
${settingsHelp()}

Exit codes: 0 done, 1 failure, 2 bad command line or configuration.
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (
    command === undefined ||
    command === '--help' ||
    command === '-h' ||
    command === 'help' ||
    rest.includes('--help')
  ) {
    process.stdout.write(HELP);
    return command === undefined ? 2 : 0;
  }
  if (command === 'serve') {
    const config = configFromProcess(rest);
    const { serveUntilSignalled } = await import('./server.js');
    await serveUntilSignalled(config);
    return -1; // keeps running until a signal
  }
  if (command === 'import') {
    const file = rest[0];
    if (file === undefined || file.startsWith('--')) {
      process.stderr.write('online-stats import: name the file to import, e.g. online-stats import users_data.json\n');
      return 2;
    }
    const config = configFromProcess(rest.slice(1));
    const { importDemoFile } = await import('./import.js');
    const count = await importDemoFile(file, config, systemClock, (message) => process.stderr.write(`${message}\n`));
    process.stdout.write(`imported ${count} users from ${file} into ${config.dataDir}\n`);
    return 0;
  }
  process.stderr.write(`online-stats: unknown command ${JSON.stringify(command)}; see online-stats --help\n`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof ConfigError) {
      process.stderr.write(`online-stats: invalid setting ${error.message}\n`);
      process.exitCode = 2;
    } else if (error instanceof DataDirLockedError || error instanceof ImportError) {
      process.stderr.write(`online-stats: ${error.message}\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`online-stats: ${(error as Error).stack ?? String(error)}\n`);
      process.exitCode = 1;
    }
  },
);
