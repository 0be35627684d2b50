// Test support for the Dockerfile without Docker: parses the instructions it uses, and lays its stages out as
// directories, so a test can run the image's command from the very files the image would hold.
import { spawnSync } from 'node:child_process';
import { chownSync, cpSync, existsSync, mkdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, join, posix, relative, sep } from 'node:path';

export interface CopyStep {
  kind: 'copy';
  line: number;
  /** The stage copied from (COPY --from); null: the build context. */
  from: string | null;
  sources: readonly string[];
  /** Absolute in the stage; ends in / when it names a directory. */
  dest: string;
}

export interface RunStep {
  kind: 'run';
  line: number;
  command: string;
  /** The WORKDIR in force, and the ENV set so far: what the command runs with. */
  workdir: string;
  env: Readonly<Record<string, string>>;
}

export interface WorkdirStep {
  kind: 'workdir';
  line: number;
  path: string;
}

export type Step = CopyStep | RunStep | WorkdirStep;

export interface HealthCheck {
  /** --interval, --timeout, --start-period, --retries as written (10s, 3). */
  options: Readonly<Record<string, string>>;
  command: readonly string[];
}

export interface Stage {
  name: string | null;
  base: string;
  steps: Step[];
  workdir: string;
  env: Record<string, string>;
  user: string | null;
  volumes: string[];
  exposed: string[];
  healthcheck: HealthCheck | null;
  stopSignal: string | null;
  cmd: readonly string[] | null;
}

const HEALTHCHECK_OPTIONS = new Set(['interval', 'timeout', 'start-period', 'start-interval', 'retries']);

/** Instructions joined across `\` line ends, with comment and blank lines dropped (inside a continuation too). */
function logicalLines(text: string): { line: number; text: string }[] {
  const lines: { line: number; text: string }[] = [];
  let current: { line: number; text: string } | null = null;
  for (const [index, raw] of text.split(/\r?\n/).entries()) {
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const continued = /\\\s*$/.test(raw);
    const body = continued ? raw.replace(/\\\s*$/, '') : raw;
    current = current ? { line: current.line, text: `${current.text}${body}` } : { line: index + 1, text: body };
    if (!continued) {
      lines.push(current);
      current = null;
    }
  }
  if (current) throw new Error(`Dockerfile ends inside a continued line`);
  return lines;
}

/** The exec form (a JSON array of strings) or the shell form (run by /bin/sh -c). */
function commandOf(args: string, where: string): string[] {
  if (!args.startsWith('[')) return ['/bin/sh', '-c', args];
  let parsed: unknown;
  try {
    parsed = JSON.parse(args);
  } catch {
    // Docker would quietly run a broken array through the shell.
    throw new Error(`${where}: not a valid JSON array: ${args}`);
  }
  if (!Array.isArray(parsed) || parsed.length === 0 || !parsed.every((part) => typeof part === 'string')) {
    throw new Error(`${where}: expected a JSON array of strings: ${args}`);
  }
  return parsed;
}

/** ENV key=value pairs, values bare or in double quotes; the legacy `ENV key value` form and $ are not supported. */
function envPairs(args: string, where: string): [string, string][] {
  const pair = /([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|[^\s"'\\]*)(?:\s+|$)/y;
  const pairs: [string, string][] = [];
  while (pair.lastIndex < args.length) {
    const match = pair.exec(args);
    if (!match) throw new Error(`${where}: expected key=value pairs: ${args}`);
    const raw = match[2] as string;
    const value = raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, '$1') : raw;
    if (value.includes('$')) throw new Error(`${where}: variable substitution is not supported: ${raw}`);
    pairs.push([match[1] as string, value]);
  }
  return pairs;
}

function words(args: string, where: string): string[] {
  if (/[$"'\\]/.test(args)) throw new Error(`${where}: quotes, escapes and variables are not supported: ${args}`);
  return args.split(/\s+/).filter(Boolean);
}

/** The stages of a Dockerfile; throws on any instruction (or form of one) this parser does not know. */
export function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  for (const { line, text: instruction } of logicalLines(text)) {
    const match = /^\s*([A-Za-z]+)\s+(.*?)\s*$/s.exec(instruction);
    if (!match) throw new Error(`Dockerfile line ${line}: cannot read ${JSON.stringify(instruction)}`);
    const keyword = (match[1] as string).toUpperCase();
    const args = match[2] as string;
    const where = `Dockerfile line ${line} (${keyword})`;
    if (keyword === 'FROM') {
      const from = /^([^\s-][^\s]*)(?:\s+AS\s+(\S+))?$/i.exec(args);
      if (!from) throw new Error(`${where}: expected FROM image [AS name]: ${args}`);
      stages.push({
        name: from[2] ?? null,
        base: from[1] as string,
        steps: [],
        workdir: '/',
        env: {},
        user: null,
        volumes: [],
        exposed: [],
        healthcheck: null,
        stopSignal: null,
        cmd: null,
      });
      continue;
    }
    const stage = stages.at(-1);
    if (!stage) throw new Error(`${where}: comes before the first FROM`);
    switch (keyword) {
      case 'WORKDIR': {
        stage.workdir = posix.resolve(stage.workdir, ...words(args, where));
        stage.steps.push({ kind: 'workdir', line, path: stage.workdir });
        break;
      }
      case 'ENV':
        for (const [key, value] of envPairs(args, where)) stage.env[key] = value;
        break;
      case 'RUN':
        if (args.startsWith('[')) throw new Error(`${where}: the exec form is not supported`);
        stage.steps.push({ kind: 'run', line, command: args, workdir: stage.workdir, env: { ...stage.env } });
        break;
      case 'COPY': {
        const parts = words(args, where);
        let from: string | null = null;
        while (parts[0]?.startsWith('--')) {
          const flag = parts.shift() as string;
          const value = /^--from=(\S+)$/.exec(flag)?.[1];
          if (value === undefined) throw new Error(`${where}: flag ${flag} is not supported`);
          from = value;
        }
        const dest = parts.pop();
        if (dest === undefined || parts.length === 0) throw new Error(`${where}: expected sources and a destination`);
        if (parts.some((source) => /[*?[]/.test(source))) throw new Error(`${where}: wildcards are not supported`);
        if (from !== null && !stages.some((earlier) => earlier !== stage && earlier.name === from)) {
          throw new Error(`${where}: no earlier stage named ${from}`);
        }
        // Several sources, or a trailing slash: the destination is a directory.
        const isDir = dest.endsWith('/') || parts.length > 1;
        const resolved = posix.resolve(stage.workdir, dest);
        stage.steps.push({ kind: 'copy', line, from, sources: parts, dest: isDir ? `${resolved}/` : resolved });
        break;
      }
      case 'USER':
        stage.user = words(args, where).join(' ');
        break;
      case 'VOLUME':
        stage.volumes.push(...(args.startsWith('[') ? commandOf(args, where) : words(args, where)));
        break;
      case 'EXPOSE':
        stage.exposed.push(...words(args, where));
        break;
      case 'STOPSIGNAL':
        stage.stopSignal = words(args, where).join(' ');
        break;
      case 'CMD':
        stage.cmd = commandOf(args, where);
        break;
      case 'HEALTHCHECK': {
        const options: Record<string, string> = {};
        let rest = args;
        for (let option = /^--([\w-]+)=(\S+)\s+/.exec(rest); option; option = /^--([\w-]+)=(\S+)\s+/.exec(rest)) {
          if (!HEALTHCHECK_OPTIONS.has(option[1] as string)) throw new Error(`${where}: unknown option --${option[1]}`);
          options[option[1] as string] = option[2] as string;
          rest = rest.slice(option[0].length);
        }
        const cmd = /^CMD\s+(.*)$/s.exec(rest);
        if (!cmd) throw new Error(`${where}: expected [options] CMD command (NONE is not supported): ${args}`);
        stage.healthcheck = { options, command: commandOf(cmd[1] as string, where) };
        break;
      }
      default:
        throw new Error(`${where}: instruction not supported by test/support/dockerfile.ts`);
    }
  }
  if (stages.length === 0) throw new Error('Dockerfile has no FROM');
  return stages;
}

/** What `.dockerignore` leaves out of the build context: a test on paths relative to it, / separated. */
function dockerignore(context: string): (path: string) => boolean {
  const file = join(context, '.dockerignore');
  if (!existsSync(file)) return () => false;
  const patterns = readFileSync(file, 'utf8')
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((pattern) => {
      if (/[!\\[\]]|\*\*/.test(pattern)) throw new Error(`.dockerignore: ${pattern}: not supported by the test`);
      const source = pattern
        .replace(/^\/+|\/+$/g, '')
        .replace(/[.+^${}()|]/g, '\\$&')
        .replace(/\*/g, '[^/]*')
        .replace(/\?/g, '[^/]');
      return new RegExp(`^${source}$`);
    });
  // A pattern that matches a directory leaves out everything under it.
  return (path) => {
    const parts = path.split('/');
    return parts.some((_, index) => {
      const prefix = parts.slice(0, index + 1).join('/');
      return patterns.some((pattern) => pattern.test(prefix));
    });
  };
}

export interface LaidOutStage {
  stage: Stage;
  /** The stage's "/" on this machine. */
  root: string;
  /** Where a path of the stage's file system is on this machine. */
  path(inStage: string): string;
}

export interface LayoutOptions {
  /** The build context (the repository). */
  context: string;
  /** An empty directory; each stage gets a subdirectory as its root. */
  into: string;
  /** Who `chown` in a RUN makes the owner (the test's stand-in for the image's user); undefined: nobody changes. */
  owner?: { uid: number; gid: number };
  /** Told what each step did, with its time. */
  log?(message: string): void;
}

/** Throws where `npm ci` would: package.json asks for dependencies the lockfile does not record. */
function inSync(dir: string, where: string): void {
  type Manifest = Partial<Record<'dependencies' | 'devDependencies' | 'optionalDependencies', object>>;
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Manifest;
  const lock = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8')) as { packages: Record<'', Manifest> };
  for (const field of ['dependencies', 'devDependencies', 'optionalDependencies'] as const) {
    const wanted = JSON.stringify(manifest[field] ?? {});
    if (wanted !== JSON.stringify(lock.packages[''][field] ?? {})) {
      throw new Error(`${where}: npm ci would fail: package.json's ${field} are not those of package-lock.json`);
    }
  }
}

/** Every environment variable but npm's own: a RUN under `npm test` must not inherit its npm_config_* settings. */
function machineEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !/^npm_/i.test(key) && key !== 'INIT_CWD') env[key] = value;
  }
  return env;
}

/**
 * Lays out the stages in turn as directory trees: COPY from the context (minus .dockerignore) or an earlier
 * stage's tree, WORKDIR made, RUN run by sh in the stage's working directory, except for three kinds:
 * - `apt-get ...` is skipped: this machine has the compilers, and nothing is compiled here (next item).
 * - `npm ci ...` becomes a copy of the repository's node_modules, which npm ci installed from the same lockfile
 *   (checked to match package.json, as npm ci does). A copy, not a symlink: the `npm prune` that follows removes
 *   packages from it. A full copy of its 12 000 files takes 1 to 3 s here; hard links would take 0.2 s, but a
 *   file written in place would then change in the repository too.
 * - `mkdir -p /abs && chown user /abs` makes that directory in the stage's tree, owned by `options.owner`.
 * Any other RUN naming an absolute path throws: it would act on this machine, not in the stage.
 */
export function layOut(stages: readonly Stage[], options: LayoutOptions): LaidOutStage[] {
  const ignored = dockerignore(options.context);
  const done: LaidOutStage[] = [];
  stages.forEach((stage, index) => {
    const root = join(options.into, stage.name ?? `stage-${index}`);
    const path = (inStage: string) => join(root, ...posix.resolve('/', inStage).split('/'));
    mkdirSync(root, { recursive: true });
    const laidOut: LaidOutStage = { stage, root, path };
    for (const step of stage.steps) {
      const startedMs = Date.now();
      const where = `Dockerfile line ${step.line}`;
      if (step.kind === 'workdir') {
        mkdirSync(path(step.path), { recursive: true });
      } else if (step.kind === 'copy') {
        const source = step.from === null ? null : done.find((earlier) => earlier.stage.name === step.from);
        for (const name of step.sources) {
          let from: string;
          if (source) {
            from = source.path(name);
          } else {
            const inContext = posix.normalize(name).replace(/\/+$/, '');
            if (inContext.startsWith('..') || posix.isAbsolute(inContext) || ignored(inContext)) {
              throw new Error(`${where}: ${name} is not in the build context`);
            }
            from = join(options.context, ...inContext.split('/'));
          }
          if (!existsSync(from)) throw new Error(`${where}: COPY ${name}: no such file`);
          // A directory's contents go into the destination; a file goes into it, or becomes it.
          const to = statSync(from).isDirectory()
            ? path(step.dest)
            : step.dest.endsWith('/')
              ? join(path(step.dest), basename(from))
              : path(step.dest);
          const filter = source
            ? undefined
            : (file: string) => !ignored(relative(options.context, file).split(sep).join('/'));
          cpSync(from, to, { recursive: true, verbatimSymlinks: true, ...(filter ? { filter } : {}) });
        }
      } else {
        const cwd = path(step.workdir);
        const [, dataDir, chownTo] = /^mkdir -p (\/\S+) && chown ([^\s:]+)\S* \1$/.exec(step.command) ?? [];
        if (/^apt-get\s/.test(step.command)) {
          options.log?.(`${where}: skipped (packages of the base image): ${step.command.slice(0, 60)}...`);
          continue;
        } else if (/^npm ci(\s|$)/.test(step.command)) {
          inSync(cwd, where);
          // The real directory: the repository's node_modules may be a symlink, and cpSync would copy the link.
          const installed = realpathSync(join(options.context, 'node_modules'));
          cpSync(installed, join(cwd, 'node_modules'), { recursive: true, verbatimSymlinks: true });
        } else if (dataDir !== undefined) {
          if (chownTo !== stage.user)
            throw new Error(`${where}: ${dataDir} is given to ${chownTo}, the stage runs as ${stage.user}`);
          mkdirSync(path(dataDir), { recursive: true });
          if (options.owner) chownSync(path(dataDir), options.owner.uid, options.owner.gid);
        } else if (/(^|[\s=])\//.test(step.command)) {
          throw new Error(`${where}: RUN names an absolute path, which only exists in the image: ${step.command}`);
        } else {
          // npm may not fetch anything: what it needs is in the copied node_modules.
          const env = { ...machineEnv(), ...step.env, npm_config_offline: 'true', npm_config_update_notifier: 'false' };
          const result = spawnSync('/bin/sh', ['-c', step.command], { cwd, env, encoding: 'utf8' });
          if (result.status !== 0) {
            throw new Error(
              `${where}: RUN ${step.command} failed (${result.status}):\n${result.stdout}${result.stderr}`,
            );
          }
        }
      }
      options.log?.(`${where}: ${step.kind} done in ${Date.now() - startedMs} ms`);
    }
    done.push(laidOut);
  });
  return done;
}
