// What every route plugin is given: the app's parts, injected, so no route imports the module that assembles it.
import type { Calendar } from '../calendar.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { AlertObserver } from '../alerts/observer.js';
import type { Metrics } from '../metrics.js';
import type { Store } from '../store/store.js';
import type { Guards } from './guards.js';

export interface AppDeps {
  config: Readonly<Config>;
  store: Store;
  clock: Clock;
  guards: Guards;
  metrics: Metrics;
  lifecycle: { shuttingDown: boolean };
  calendar: Calendar;
  /** The alert rules and webhook events (null: no --webhook-url). */
  alerts: AlertObserver | null;
  /** The pseudonym of a client id (batch ingest). */
  identityOfClient(clientId: string): string;
}
