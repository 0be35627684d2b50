// Configuration: defaults, parsing of durations and rates, and start-up refusing bad values with exit code 2.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { SETTINGS, defaultConfig, loadConfig, parseDurationMs, parseRate } from '../src/config.js';
import { ConfigError } from '../src/errors.js';
import { runCli, tempDir } from './support/app.js';

describe('configuration', () => {
  it('defaults match the demo: port 8001 on 0.0.0.0, 10 minute timeout, 1 request/s', () => {
    const config = loadConfig([], {});
    assert.equal(config.port, 8001);
    assert.equal(config.host, '0.0.0.0');
    assert.equal(config.dataDir, './data');
    assert.equal(config.heartbeatTimeoutMs, 600_000);
    assert.deepEqual(config.ingestRateLimit, { count: 1, periodMs: 1000, burst: 1 });
    assert.deepEqual(config.readRateLimit, { count: 1, periodMs: 1000, burst: 1 });
    assert.equal(config.maxDays, 3650);
    assert.equal(config.apiToken, null);
    assert.deepEqual(config.trustProxy, []);
    assert.ok(Object.isFrozen(config));
  });

  it('connections are capped below a 20,000 descriptor limit, 1,000 per address, and a request must arrive within 10 s', () => {
    const config = loadConfig([], {});
    assert.equal(config.maxConnections, 10_000);
    assert.equal(config.maxConnectionsPerAddress, 1000);
    assert.equal(config.requestTimeoutMs, 10_000);
    const set = loadConfig(['--max-connections', '500', '--request-timeout', '2s'], {
      MAX_CONNECTIONS_PER_ADDRESS: '8',
    });
    assert.equal(set.maxConnections, 500);
    assert.equal(set.maxConnectionsPerAddress, 8);
    assert.equal(set.requestTimeoutMs, 2000);
  });

  it('flags win over the environment, which wins over defaults', () => {
    const config = loadConfig(['--port', '9000'], {
      PORT: '9100',
      HEARTBEAT_TIMEOUT: '30s',
      TRUST_PROXY: '10.0.0.0/8, ::1',
    });
    assert.equal(config.port, 9000);
    assert.equal(config.heartbeatTimeoutMs, 30_000);
    assert.deepEqual(config.trustProxy, ['10.0.0.0/8', '::1']);
  });

  it('durations accept 30s, 10m, 1h', () => {
    assert.equal(parseDurationMs('30s'), 30_000);
    assert.equal(parseDurationMs('10m'), 600_000);
    assert.equal(parseDurationMs('1h'), 3_600_000);
    assert.equal(parseDurationMs('1.5m'), 90_000);
    assert.equal(parseDurationMs('10'), null);
    assert.equal(parseDurationMs('ten minutes'), null);
  });

  it('rates accept N/s, N/m, N/10s, bursts, and off', () => {
    assert.deepEqual(parseRate('1/s'), { count: 1, periodMs: 1000, burst: 1 });
    assert.deepEqual(parseRate('100/m'), { count: 100, periodMs: 60_000, burst: 100 });
    assert.deepEqual(parseRate('5/10s:2'), { count: 5, periodMs: 10_000, burst: 2 });
    assert.equal(parseRate('off'), null);
    assert.equal(parseRate('fast'), 'invalid');
    assert.equal(parseRate('0'), null);
    assert.equal(parseRate('0/s'), 'invalid');
  });

  it('a bad value names its setting', () => {
    const cases: [string[], Record<string, string>, RegExp][] = [
      [['--port', '70000'], {}, /--port/],
      [[], { PORT: 'eighty' }, /PORT/],
      [['--heartbeat-timeout', '10'], {}, /--heartbeat-timeout/],
      [['--rate-limit', 'lots'], {}, /--rate-limit/],
      [['--trust-proxy', '10.0.0.0/99'], {}, /--trust-proxy/],
      [['--trust-proxy', 'proxy.local'], {}, /--trust-proxy/],
      [['--max-days', '0'], {}, /--max-days/],
      [['--log-level', 'loud'], {}, /--log-level/],
      [['--time-zone', 'Mars/Olympus'], {}, /--time-zone/],
      [['--identity-secret', 'short'], {}, /--identity-secret/],
      [['--store', 'redis'], {}, /--redis-url/],
      [['--store', 'redis', '--redis-url', 'redis://127.0.0.1:6379'], {}, /--identity-secret/],
      [['--no-such-flag', '1'], {}, /no-such-flag/],
      [['--max-connections', '0'], {}, /--max-connections/],
      [['--max-connections-per-address', 'many'], {}, /--max-connections-per-address/],
      [['--request-timeout', '10ms'], {}, /--request-timeout/],
    ];
    for (const [argv, env, setting] of cases) {
      assert.throws(
        () => loadConfig(argv, env),
        (error: unknown) => error instanceof ConfigError && setting.test(error.message),
        argv.join(' '),
      );
    }
  });

  it('an empty --api-token or API_TOKEN is refused instead of silently turning auth off', () => {
    const refused = (error: unknown) => error instanceof ConfigError && /--api-token \/ API_TOKEN/.test(error.message);
    assert.throws(() => loadConfig(['--api-token', ''], {}), refused);
    assert.throws(() => loadConfig([], { API_TOKEN: '  ' }), refused);
    assert.equal(loadConfig([], {}).apiToken, null, 'unset: off, as documented');
  });

  it("the plugin's config with apiToken: process.env.STATS_TOKEN, unset, crashed the host: undefined keeps the default", () => {
    const config = defaultConfig({ apiToken: undefined, ingestToken: undefined, port: 9000 });
    assert.equal(config.apiToken, null);
    assert.equal(config.ingestToken, null);
    assert.equal(config.port, 9000);
  });

  it('the CLI refuses a bad value with exit code 2 and a message naming it', async () => {
    const dir = tempDir();
    try {
      const result = await runCli(['serve', '--heartbeat-timeout', 'soon', '--data-dir', dir.path]);
      assert.equal(result.code, 2);
      assert.match(result.stderr, /--heartbeat-timeout/);
    } finally {
      dir.remove();
    }
  });

  it('--help lists every command and every flag', async () => {
    const result = await runCli(['--help']);
    assert.equal(result.code, 0);
    for (const command of ['serve', 'import']) assert.match(result.stdout, new RegExp(`online-stats ${command}`));
    for (const setting of SETTINGS) {
      assert.ok(result.stdout.includes(`--${setting.flag}`), `--${setting.flag} is listed`);
      assert.ok(result.stdout.includes(setting.env), `${setting.env} is listed`);
    }
  });
});

describe('the command line', () => {
  it('had no --version: it prints the package version', async () => {
    const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    for (const flag of ['--version', '-v']) {
      const result = await runCli([flag]);
      assert.equal(result.code, 0);
      assert.equal(result.stdout, `${version}\n`);
    }
  });

  it('refused "serve -h" and printed every flag for import: each command has its own help', async () => {
    const serve = await runCli(['serve', '-h']);
    assert.equal(serve.code, 0, serve.stderr);
    assert.match(serve.stdout, /^online-stats serve/);
    assert.match(serve.stdout, /--port/);
    const help = await runCli(['import', '--help']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^online-stats import <users_data.json>/);
    assert.match(help.stdout, /--data-dir/);
    assert.match(help.stdout, /--identity-secret-file/);
    for (const flag of ['--port', '--rate-limit', '--cors-origin'])
      assert.ok(!help.stdout.includes(flag), `import --help does not list ${flag}`);
  });
});

describe('the README', () => {
  it('lists every setting with its flag, environment variable and default', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    for (const setting of SETTINGS) {
      const shown = setting.defaultText ?? (setting.default === '' ? '(none)' : `\`${setting.default}\``);
      assert.ok(
        readme.includes(`| \`--${setting.flag}\` | \`${setting.env}\` | ${shown} |`),
        `README.md's settings table lacks --${setting.flag}`,
      );
    }
  });
});
