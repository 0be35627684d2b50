#!/usr/bin/env node
// The `online-stats` command: parse arguments, call one function (serve or import).
import { readFileSync } from 'node:fs';
import { systemClock } from './clock.js';
import { configFromProcess, settingsHelp } from './config.js';
import { ConfigError, EXIT_CODES, exitCodeOf, exitCodesHelp } from './errors.js';

/** What `import` reads of the settings: where the data goes and how it is pseudonymised and counted. */
const IMPORT_SETTINGS = [
  'store',
  'redisUrl',
  'redisPrefix',
  'redisShards',
  'dataDir',
  'identitySecret',
  'identitySecretFile',
  'heartbeatTimeoutMs',
  'maxDays',
  'maxChannels',
  'timeZone',
  'maxDatabaseBytes',
] as const;

const USAGE = `online-stats: how many of your users are online now, and how many were active lately.

Usage:
  online-stats serve [flags]                 run the HTTP service (API, /docs, dashboard)
  online-stats import <users_data.json> [flags]
                                             migrate the FastAPI demo's data file into the
                                             store (idempotent; checked whole before anything is
                                             written; with SQLite, stop the service first)
  online-stats healthcheck [flags]           exit 0 when the service on this machine is ready
                                             (GET /readyz), 1 when not: for HEALTHCHECK and probes
  online-stats <command> --help              the flags of one command
  online-stats --version                     the version
`;

const HELP = `${USAGE}
Flags of serve (each also read from the environment variable shown; flags win):
${settingsHelp()}

Exit codes:
${exitCodesHelp()}
`;

/** What `healthcheck` reads: where the service listens. */
const HEALTHCHECK_SETTINGS = ['port', 'host'] as const;

const COMMAND_HELP: Record<string, string> = {
  healthcheck: `online-stats healthcheck [flags]: ask the service on this machine whether it is ready
(GET /readyz, 2 s at most); exit 0 when it is, 1 when it is not or does not answer. Give it the
port and host the service was given (the environment of a container gives both the same).

Flags (each also read from the environment variable shown; flags win):
${settingsHelp(HEALTHCHECK_SETTINGS)}
`,
  serve: `online-stats serve [flags]: run the HTTP service (API, /docs, dashboard).

Flags (each also read from the environment variable shown; flags win):
${settingsHelp()}

Exit codes:
${exitCodesHelp()}
`,
  import: `online-stats import <users_data.json> [flags]: migrate the FastAPI demo's data file into the
store (--store sqlite, the default, or redis). The whole file is checked before anything is written, so a bad
entry writes nothing; progress goes to stderr every second. Idempotent: importing again changes nothing. With
SQLite stop the service first (it holds the data directory); with Redis the instances may keep running, and
--identity-secret must be theirs.

Flags (each also read from the environment variable shown; flags win):
${settingsHelp(IMPORT_SETTINGS)}

Exit codes:
${exitCodesHelp()}
`,
};

/** The package's version, from its package.json (next to dist/ when built, one level up from the sources). */
function version(): string {
  for (const candidate of ['../../package.json', '../package.json']) {
    try {
      const json = JSON.parse(readFileSync(new URL(candidate, import.meta.url), 'utf8')) as { version?: unknown };
      if (typeof json.version === 'string') return json.version;
    } catch {
      // Not there: the other layout.
    }
  }
  return 'unknown';
}

const asksHelp = (args: readonly string[]) => args.includes('--help') || args.includes('-h');

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === '--version' || command === '-v' || command === 'version') {
    process.stdout.write(`${version()}\n`);
    return EXIT_CODES.OK.code;
  }
  const commandHelp = command === undefined ? undefined : COMMAND_HELP[command];
  if (commandHelp !== undefined && asksHelp(rest)) {
    process.stdout.write(commandHelp);
    return EXIT_CODES.OK.code;
  }
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(HELP);
    return command === undefined ? EXIT_CODES.CONFIG.code : EXIT_CODES.OK.code;
  }
  if (command === 'serve') {
    const config = configFromProcess(rest);
    const { serveUntilSignalled } = await import('./server.js');
    await serveUntilSignalled(config);
    return -1; // keeps running until a signal
  }
  if (command === 'healthcheck') {
    const config = configFromProcess(rest);
    const { checkReady } = await import('./healthcheck.js');
    const { ready, message } = await checkReady(config);
    (ready ? process.stdout : process.stderr).write(`${message}\n`);
    return ready ? EXIT_CODES.OK.code : EXIT_CODES.FAILURE.code;
  }
  if (command === 'import') {
    const file = rest[0];
    if (file === undefined || file.startsWith('--')) {
      process.stderr.write('online-stats import: name the file to import, e.g. online-stats import users_data.json\n');
      return EXIT_CODES.CONFIG.code;
    }
    const config = configFromProcess(rest.slice(1));
    const { importDemoFile, importDestination } = await import('./import.js');
    const count = await importDemoFile(file, config, systemClock, {
      progress: (message) => process.stderr.write(`${message}\n`),
    });
    process.stdout.write(`imported ${count} users from ${file} into ${importDestination(config)}\n`);
    return EXIT_CODES.OK.code;
  }
  process.stderr.write(`online-stats: unknown command ${JSON.stringify(command)}; see online-stats --help\n`);
  return EXIT_CODES.CONFIG.code;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (error: unknown) => {
    process.exitCode = exitCodeOf(error);
    // A known refusal (its class carries an exit code): one line naming the problem and the fix; a bug: its stack.
    if (!(error instanceof Error) || !('exitCode' in error)) {
      process.stderr.write(`online-stats: ${(error as Error | undefined)?.stack ?? String(error)}\n`);
      return;
    }
    const message = error.message.replace(/\s*\n\s*/g, ' ');
    process.stderr.write(`online-stats: ${error instanceof ConfigError ? 'invalid setting ' : ''}${message}\n`);
  },
);
