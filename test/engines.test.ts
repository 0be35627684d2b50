// Every installed package supports the Node versions package.json promises, so `npm ci` installs without EBADENGINE.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import semver from 'semver';

interface LockedPackage {
  version?: string;
  dev?: boolean;
  engines?: { node?: string } | string[];
}
const root = new URL('..', import.meta.url);
const manifest = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as {
  engines: { node: string };
  devEngines: { runtime: { name: string; version: string } };
};
const lock = JSON.parse(readFileSync(new URL('package-lock.json', root), 'utf8')) as {
  packages: Record<string, LockedPackage>;
};

/** The packages whose declared Node range does not cover every version of `range`. */
function unsupported(range: string, include: (entry: LockedPackage) => boolean): string[] {
  return Object.entries(lock.packages)
    .filter(([path, entry]) => path !== '' && include(entry))
    .flatMap(([path, entry]) => {
      const node = Array.isArray(entry.engines) ? undefined : entry.engines?.node;
      return node === undefined || semver.subset(range, node) ? [] : [`${path} (${entry.version}) wants ${node}`];
    });
}

describe('supported Node versions', () => {
  it('every production dependency supports every Node version of engines: users install without warnings', () => {
    assert.deepEqual(
      unsupported(manifest.engines.node, (entry) => entry.dev !== true),
      [],
    );
  });

  it('every package, development tools included, supports every Node version of devEngines', () => {
    assert.equal(manifest.devEngines.runtime.name, 'node');
    assert.ok(semver.subset(manifest.devEngines.runtime.version, manifest.engines.node), 'devEngines within engines');
    assert.deepEqual(
      unsupported(manifest.devEngines.runtime.version, () => true),
      [],
    );
  });

  it('this Node is one of them', () => {
    assert.ok(
      semver.satisfies(process.version, manifest.devEngines.runtime.version),
      `${process.version} is outside ${manifest.devEngines.runtime.version}`,
    );
  });
});
