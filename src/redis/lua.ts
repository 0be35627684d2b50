// Lua scripts for Redis: loaded once from their files, sent by SHA (EVALSHA), and in full only when Redis lacks them.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { RedisClient } from './connection.js';

/** A Lua script sent by SHA, and in full (EVAL) only when Redis does not have it yet (after a restart). */
export class LuaScript {
  readonly sha: string;

  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  /** Reads the script next to the module that uses it: `LuaScript.load(new URL('./x.lua', import.meta.url))`. */
  static load(url: URL): LuaScript {
    return new LuaScript(readFileSync(url, 'utf8'));
  }

  async run(
    client: RedisClient,
    keys: readonly string[],
    args: readonly (string | Buffer | number)[],
  ): Promise<unknown> {
    try {
      return await client.call('EVALSHA', [this.sha, keys.length, ...keys, ...args]);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return client.call('EVAL', [this.source, keys.length, ...keys, ...args]);
    }
  }
}
