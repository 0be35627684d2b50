// The house rules of src/ (docs/architecture.md): no import circles, and data flows one way,
// HTTP -> identity -> limiter -> store -> answer. `npm run lint` fails on any violation.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'A circle means two rooms cannot be understood (or changed) apart.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'store-stays-below',
      severity: 'error',
      comment:
        'A store knows the domain, not who asks: it never imports routes, the request pipeline, the app or the limiter.',
      from: { path: '^src/store/' },
      to: { path: '^src/(routes|http|ratelimit)/|^src/(app|plugin|server|open-store|cli)\\.ts$' },
    },
    {
      name: 'limiter-knows-no-store',
      severity: 'error',
      comment: 'The limiter runs before the store and shares only the Redis plumbing (src/redis/) with it.',
      from: { path: '^src/ratelimit/' },
      to: { path: '^src/(store|routes|http)/|^src/(app|plugin|server|open-store)\\.ts$' },
    },
    {
      name: 'redis-plumbing-is-shared',
      severity: 'error',
      comment: 'src/redis/ is the base the Redis store and limiter stand on: it imports neither.',
      from: { path: '^src/redis/' },
      to: { path: '^src/(store|ratelimit|routes|http)/|^src/(app|plugin|server|open-store)\\.ts$' },
    },
    {
      name: 'routes-do-not-import-the-assembly',
      severity: 'error',
      comment: 'Routes receive their dependencies (http/deps.ts); the app that assembles them is above them.',
      from: { path: '^src/(routes|http)/' },
      to: { path: '^src/(app|plugin|server|open-store|cli|index)\\.ts$' },
    },
    {
      name: 'pipeline-knows-no-route',
      severity: 'error',
      comment: 'The request pipeline serves every route; a route may use it, not the other way round.',
      from: { path: '^src/http/' },
      to: { path: '^src/routes/' },
    },
    {
      name: 'only-the-entry-point-serves',
      severity: 'error',
      comment: 'Nothing but the CLI and the library entry point imports server.ts (tests and tools import the parts).',
      from: { path: '^src/', pathNot: '^src/(cli|index)\\.ts$' },
      to: { path: '^src/server\\.ts$' },
    },
    {
      name: 'alerts-are-pure',
      severity: 'error',
      comment:
        'The alert rules turn count changes into events and know nothing of HTTP, stores or delivery: they are told by ' +
        'the store (through the CountObserver contract) and read by the routes.',
      from: { path: '^src/alerts/' },
      to: {
        path: '^src/(routes|http|ratelimit|redis|webhooks)/|^src/store/(?!store\\.ts$)|^src/(app|plugin|server|open-store|cli)\\.ts$',
      },
    },
    {
      name: 'webhooks-only-deliver',
      severity: 'error',
      comment:
        'Delivery reads the outbox through the Store contract and signs and sends; it knows no route or backend.',
      from: { path: '^src/webhooks/' },
      to: {
        path: '^src/(routes|http|ratelimit|redis|alerts)/|^src/store/(?!store\\.ts$)|^src/(app|plugin|server|open-store|cli)\\.ts$',
      },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
    {
      name: 'no-dev-dependencies-in-src',
      severity: 'error',
      comment: 'The service ships without devDependencies (npm ci --omit=dev).',
      from: { path: '^src/' },
      to: { dependencyTypes: ['npm-dev'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
    },
  },
};
