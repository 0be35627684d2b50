// Lints the OpenAPI document the built service serves (npm run build first) with Redocly CLI and redocly.yaml: any
// error or warning fails, so npm test keeps the document at none of either.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const { ManualClock, SqliteStore, buildApp, defaultConfig } = await import(join(root, 'dist/src/index.js'));
const { storeOptions } = await import(join(root, 'dist/src/open-store.js'));

/**
 * The document differs with the configuration: reads and /metrics need the token only when one is
 * set. Both forms are linted, each under the name of what it describes.
 */
const variants = {
  'no-token': {},
  'api-token': { apiToken: 'openapi-lint-token-0123456789abcdef' },
};

const dir = mkdtempSync(join(tmpdir(), 'online-stats-openapi-'));
try {
  const files = [];
  for (const [name, overrides] of Object.entries(variants)) {
    const dataDir = join(dir, `${name}-data`);
    const config = defaultConfig({ dataDir, logLevel: 'silent', ...overrides });
    const clock = new ManualClock(Date.now());
    const store = SqliteStore.open(join(dir, `${name}.db`), storeOptions(config), clock.nowMs());
    const app = await buildApp({
      config,
      store,
      clock,
      identitySecret: 'openapi-lint-'.padEnd(40, '0'),
      logger: false,
    });
    try {
      await app.ready();
      // What clients read: the document /openapi.json answers, not the object behind it.
      const response = await app.inject({ url: '/openapi.json' });
      if (response.statusCode !== 200) throw new Error(`/openapi.json answered ${response.statusCode}`);
      const file = join(dir, `${name}.json`);
      writeFileSync(file, response.body);
      files.push(file);
    } finally {
      await app.close();
      await store.close();
    }
  }

  const cli = createRequire(import.meta.url).resolve('@redocly/cli/bin/cli.js');
  let failed = false;
  // One run per document: given several, redocly writes one JSON report after another.
  for (const file of files) {
    const name = file.slice(dir.length + 1);
    const result = spawnSync(
      process.execPath,
      [cli, 'lint', file, '--config', join(root, 'redocly.yaml'), '--format=json'],
      {
        encoding: 'utf8',
        // No network: no usage report, no check for a newer release.
        env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
      },
    );
    let report;
    try {
      report = JSON.parse(result.stdout);
    } catch {
      process.stderr.write(
        `${result.stdout}${result.stderr}\n${name}: redocly lint gave no report (exit ${result.status})\n`,
      );
      failed = true;
      continue;
    }
    const { errors, warnings } = report.totals;
    for (const problem of report.problems) {
      const pointer = problem.location?.[0]?.pointer ?? '';
      process.stderr.write(`${name} ${pointer}: ${problem.severity} ${problem.ruleId}: ${problem.message}\n`);
    }
    // Warnings fail as errors do: they are what a reader of the document, or a client generator, trips on.
    if (errors > 0 || warnings > 0 || result.status !== 0) {
      process.stderr.write(`${name}: ${errors} errors, ${warnings} warnings (redocly exit ${result.status})\n`);
      failed = true;
    }
  }
  if (failed) process.exitCode = 1;
  else process.stdout.write(`OpenAPI lint: ${Object.keys(variants).join(' and ')} documents, no errors, no warnings\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
