// `npm start`: serve from dist/, building it first only when it is missing or older than the sources.
//
// The service runs in this very process (no child), and npm runs it with `exec`, so SIGTERM and
// SIGINT sent to `npm start` reach the server itself: none is left running, holding the port and
// the data directory, when npm is stopped.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'dist', 'src', 'cli.js');

/** The newest modification time under `dir`, in ms (0 when it does not exist). */
function newest(dir) {
  if (!existsSync(dir)) return 0;
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    latest = Math.max(latest, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs);
  }
  return latest;
}

const sources = Math.max(newest(join(root, 'src')), newest(join(root, 'client')));
const built = existsSync(cli) ? statSync(cli).mtimeMs : 0;
// A production install has no sources to be newer than, and no compiler: it serves what was built.
if (sources > built) {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  if (!existsSync(tsc)) {
    process.stderr.write(
      `online-stats: ${cli} is missing or older than src/, and TypeScript is not installed: run npm run build\n`,
    );
    process.exit(1);
  }
  process.stderr.write('online-stats: building dist/ (the sources changed)\n');
  try {
    execFileSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
  } catch {
    process.stderr.write('online-stats: the build failed (its errors are above); nothing was started\n');
    process.exit(1);
  }
}

process.argv.splice(2, 0, 'serve');
await import(cli);
