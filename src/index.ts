// The library entry point (`import { serve } from 'online-stats-server'`): embed the service or build on its parts.
export { buildApp, type App, type AppOptions } from './app.js';
export { createCalendar } from './calendar.js';
export { ManualClock, systemClock, type Clock } from './clock.js';
export { SETTINGS, defaultConfig, loadConfig, type Config, type ConfigOverrides, type Rate } from './config.js';
export { ConfigError, DataDirError, EXIT_CODES, StoreUnavailableError } from './errors.js';
export { importDemoFile } from './import.js';
export { onlineStats, type OnlineStatsOptions } from './plugin.js';
export { openStore, storeOptions, type OpenedStore } from './open-store.js';
export { serve, type Running } from './server.js';
export { SqliteStore } from './store/sqlite.js';
export type { RateLimiterStore } from './ratelimit/limiter.js';
export type { ChannelCount, DayActivity, HeartbeatRecord, RecordOutcome, Store, StoreOptions } from './store/store.js';
