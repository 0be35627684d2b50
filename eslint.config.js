// ESLint for src/, client/, test/ and bench/: typescript-eslint's type-aware rules, and the house rules
// docs/architecture.md gives.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

/** node:test's describe/it/before/after return promises the runner awaits itself. */
const nodeTestCalls = [
  {
    from: 'package',
    package: 'node:test',
    name: ['describe', 'it', 'test', 'before', 'after', 'beforeEach', 'afterEach', 'suite'],
  },
];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // A promise nobody awaits or handles loses its error: the one mistake an async service cannot afford.
      '@typescript-eslint/no-floating-promises': ['error', { allowForKnownSafeCalls: nodeTestCalls }],
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' },
      ],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      eqeqeq: ['error', 'always'],
      // Prettier wraps code at 120; this holds comments to it too. Strings, templates and patterns
      // may run longer (OpenAPI texts, SQL), since breaking them would change what they say.
      'max-len': [
        'error',
        { code: 120, ignoreStrings: true, ignoreTemplateLiterals: true, ignoreRegExpLiterals: true, ignoreUrls: true },
      ],
      // Fastify handlers and Store methods are async by contract: they return a promise even when
      // the answer is already in memory, so an async function without an await is intended.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      // Replies are read as JSON (light-my-request's json() is any) and the assertions check their
      // shape; typing every reply would test the types, not the service. src/ keeps these rules.
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      // Test doubles hand callbacks around as plain functions (onResult: results.onResult).
      '@typescript-eslint/unbound-method': 'off',
    },
  },
  {
    files: ['src/**/*.ts'],
    rules: {
      // Configuration is read once, in config.ts, and frozen; everything else is handed its settings.
      'no-restricted-properties': [
        'error',
        { object: 'process', property: 'env', message: 'read settings in src/config.ts only' },
      ],
      // Time comes from the injected clock, so tests control it. performance.now() (durations) is allowed.
      'no-restricted-syntax': [
        'error',
        {
          selector: "CallExpression[callee.object.name='Date'][callee.property.name='now']",
          message: 'use the injected Clock (src/clock.ts)',
        },
      ],
    },
  },
  {
    files: ['src/config.ts', 'src/clock.ts'],
    rules: { 'no-restricted-properties': 'off', 'no-restricted-syntax': 'off' },
  },
  {
    files: ['**/*.js', '**/*.cjs', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    files: ['src/dashboard/**/*.js'],
    languageOptions: { globals: globals.browser },
  },
  {
    files: ['scripts/**/*.mjs', '*.cjs', 'eslint.config.js'],
    languageOptions: { globals: globals.node },
  },
);
