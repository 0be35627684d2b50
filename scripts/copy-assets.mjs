// Copies the non-TypeScript files the service reads at run time (SQL, Lua, dashboard assets) next to the compiled code.
import { cpSync, existsSync } from 'node:fs';

const ASSETS = /\.(sql|lua|html|css|js|svg|png|ico)$/;
for (const dir of ['src']) {
  if (!existsSync(dir)) continue;
  cpSync(dir, `dist/${dir}`, {
    recursive: true,
    filter: (path) => !path.endsWith('.ts') && (!/\.\w+$/.test(path) || ASSETS.test(path)),
  });
}
