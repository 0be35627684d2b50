// @ts-check
// The dashboard's logic: first paint from /analytics/summary, then live figures from /events, the chart of online over
// time from /analytics/concurrency and the daily chart from /analytics/daily; charts are drawn by uPlot.
// One job (the page's one script, served as is, so not split into modules); types are JSDoc, checked by tsc.
// Reads go one at a time through one queue, under this browser's own X-Client-Id, so they stay within the read budget:
// a page load makes four (one a second), a change of range or channel one.

const TOKEN_KEY = 'online-stats-token';
const ID_KEY = 'online-stats-dashboard-id';
/** Least gap between two reads: the service's default read budget is one a second per client. */
const READ_GAP_MS = 1050;
/**
 * Active counts and the chart are re-read this often, and sooner (but no sooner than this) after live figures change.
 */
const SUMMARY_EVERY_MS = 60_000;
const SUMMARY_AFTER_CHANGE_MS = 5_000;
const DAILY_EVERY_MS = 300_000;
const DAILY_AFTER_CHANGE_MS = 60_000;
/** The chart of online over time: by minute it gains a point a minute, by hour or day it changes slowly. */
const HISTORY_BY_MINUTE_EVERY_MS = 60_000;
const HISTORY_EVERY_MS = 300_000;
const HISTORY_AFTER_CHANGE_MS = 20_000;
const RETRY_AFTER_ERROR_MS = 10_000;
const DAY_MS = 86_400_000;

/**
 * The ranges of the chart of online over time, each at the finest interval that fits the API's 1,500 points an answer
 * (90 days by hour would be 2,160). 24 hours by minute is the API's default range, so it names no `from`.
 * @typedef {'24h' | '7d' | '30d' | '90d'} RangeName
 * @typedef {'minute' | 'hour' | 'day'} Interval
 * @type {Record<RangeName, { days: number, interval: Interval }>}
 */
const RANGES = {
  '24h': { days: 1, interval: 'minute' },
  '7d': { days: 7, interval: 'hour' },
  '30d': { days: 30, interval: 'hour' },
  '90d': { days: 90, interval: 'day' },
};
/** @type {Record<Interval, number>} */
const INTERVAL_SECONDS = { minute: 60, hour: 3600, day: 86_400 };

/** uPlot's browser build (uplot.min.js, loaded before this script) defines it as a global. */
const uPlot = /** @type {{ uPlot: typeof import('uplot') }} */ (/** @type {unknown} */ (globalThis)).uPlot;

// What the page reads from the API, as src/routes/analytics.ts and src/routes/events.ts declare it.
/** @typedef {{ channel: string, online: number }} Channel */
/**
 * The highest online count and when it was first reached (ISO 8601; null: never).
 * @typedef {{ online: number, at: string | null }} Peak
 */
/**
 * GET /analytics/summary: online now, today's and the all-time peak, and the
 * distinct clients active in the last 1, 7 and 30 days.
 * @typedef {object} Summary
 * @property {number} online_clients_count
 * @property {{ today: Peak, all_time: Peak } | null} peaks
 * @property {{ '1': number, '7': number, '30': number }} active
 * @property {Channel[]} top_channels
 * @property {string} time_zone
 */
/**
 * GET /analytics/concurrency: per interval from `start` (ISO 8601), the most and fewest online and the mean.
 * @typedef {{ start: string, max: number, min: number, mean: number }} ConcurrencyPoint
 * @typedef {{ interval: Interval, channel: string | null, points: ConcurrencyPoint[] }} Concurrency
 */
/**
 * One day of GET /analytics/daily; wau, mau and stickiness (dau / mau) are estimates.
 * @typedef {object} DayFigures
 * @property {string} day
 * @property {number} dau
 * @property {number} wau
 * @property {number} mau
 * @property {number} new
 * @property {number} stickiness
 */
/** @typedef {{ time_zone: string, days: DayFigures[] }} Daily */
/**
 * The data of an `online` event on /events.
 * @typedef {{ online_clients_count: number, channels: Channel[], peak_today?: Peak | null, at: string }} LiveFigures
 */
/** @typedef {'connecting' | 'live' | 'reconnecting'} StreamState */
/**
 * The reads besides the live stream, each with its own refresher.
 * @typedef {'summary' | 'daily' | 'history'} ReadName
 */

/** @param {string} id one of the elements index.html always has, so never null */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const numbers = new Intl.NumberFormat();

class Unauthorized extends Error {}
/** A read the service answered with an error: its status, and its message when it gave one. */
class Refused extends Error {
  /**
   * @param {number} status
   * @param {string} message
   */
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const session = {
  token: takeToken(),
  clientId: dashboardId(),
  controller: new AbortController(),
  /** When the last live event arrived: a summary read that began before it must not overwrite it. */
  liveAtMs: 0,
  /** The live figures last shown, to tell a change from a repeat (the first event after connecting). */
  liveFigures: '',
  /** The service's time zone (days, today's peak), as the summary names it. */
  timeZone: 'UTC',
  /** The service's clock less this browser's, from the Date header: ranges are asked for in the service's time. */
  clockOffsetMs: 0,
  /** The all-time peak last shown: today's peak, live, may pass it. */
  record: /** @type {Peak | null} */ (null),
  /** Shows another range or channel in the chart of online over time (and reads it): start() sets it. */
  changeView: /** @type {(change: { range?: RangeName, channel?: string | null }) => void} */ (() => {}),
};

/** What the chart of online over time shows: a range, of the total (null) or of one channel. */
const view = { range: /** @type {RangeName} */ ('24h'), channel: /** @type {string | null} */ (null) };

/**
 * What the status line says: the live stream's state, unless some read keeps failing.
 * @type {{ stream: StreamState, failing: Set<ReadName> }}
 */
const health = { stream: 'connecting', failing: new Set() };

// ---- reading the API -------------------------------------------------------------------------

let queue = Promise.resolve();
let nextReadAtMs = 0;

/**
 * One GET at a time, spaced READ_GAP_MS apart; a 429 waits exactly Retry-After and tries again.
 * @param {string} path
 * @param {AbortSignal} signal
 * @returns {Promise<Response>}
 */
function read(path, signal) {
  // The service may sit under a prefix of a larger app: paths are taken from where this script was served
  // (<prefix>/dashboard/dashboard.js), not from the site's root.
  const url = new URL(`..${path}`, import.meta.url);
  const attempt = queue.then(async () => {
    for (;;) {
      // A read given up while it waited (a range changed again) takes no turn.
      signal.throwIfAborted();
      await sleep(nextReadAtMs - Date.now(), signal);
      /** @type {Record<string, string>} */
      const headers = {
        accept: path === '/events' ? 'text/event-stream' : 'application/json',
        'x-client-id': session.clientId,
      };
      if (session.token) headers.authorization = `Bearer ${session.token}`;
      const response = await fetch(url, { headers, signal, cache: 'no-store' });
      nextReadAtMs = Date.now() + READ_GAP_MS;
      const serverMs = Date.parse(response.headers.get('date') ?? '');
      if (Number.isFinite(serverMs)) session.clockOffsetMs = serverMs - Date.now();
      if (response.status === 429) {
        const seconds = Number(response.headers.get('retry-after'));
        nextReadAtMs = Date.now() + (Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : READ_GAP_MS);
        continue;
      }
      if (response.status === 401) throw new Unauthorized();
      if (!response.ok) {
        const body = /** @type {{ message?: unknown }} */ (await response.json().catch(() => ({})));
        throw new Refused(
          response.status,
          typeof body.message === 'string' ? body.message : `${path} answered ${response.status}`,
        );
      }
      return response;
    }
  });
  queue = attempt.then(
    () => undefined,
    () => undefined,
  );
  return attempt;
}

/**
 * @param {number} ms
 * @param {AbortSignal} signal
 * @returns {Promise<void>}
 */
function sleep(ms, signal) {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}

/** @param {AbortSignal} signal */
async function loadSummary(signal) {
  const startedMs = Date.now();
  const summary = /** @type {Summary} */ (await (await read('/analytics/summary', signal)).json());
  session.timeZone = summary.time_zone;
  session.record = summary.peaks?.all_time ?? null;
  if (session.liveAtMs < startedMs) {
    setNumber('online', summary.online_clients_count);
    showChannels(summary.top_channels);
    session.liveFigures = JSON.stringify([summary.online_clients_count, summary.top_channels]);
    showPeakToday(summary.peaks?.today ?? null);
  }
  showRecord();
  for (const days of /** @type {const} */ (['1', '7', '30'])) setNumber(`active-${days}`, summary.active[days]);
  $('zone').textContent = `Days in ${summary.time_zone}`;
}

/** @param {AbortSignal} signal */
async function loadDaily(signal) {
  const daily = /** @type {Daily} */ (await (await read('/analytics/daily', signal)).json());
  const days = sinceDataBegan(daily.days);
  showDaily(days);
  showTable(days);
}

/**
 * The days from the first with any figure on: a fresh install's month is not 29 empty days and today.
 * @param {DayFigures[]} days oldest first
 */
function sinceDataBegan(days) {
  const first = days.findIndex((d) => d.dau > 0 || d.wau > 0 || d.mau > 0 || d.new > 0);
  return days.slice(first < 0 ? Math.max(0, days.length - 1) : first);
}

/** The read of the chart of online over time that is under way, given up when the range or channel changes. */
let historyRead = new AbortController();

/** @param {AbortSignal} signal */
async function loadHistory(signal) {
  historyRead.abort();
  const mine = (historyRead = new AbortController());
  const { range, channel } = view;
  const { days, interval } = RANGES[range];
  const query = new URLSearchParams({ interval });
  if (range !== '24h') query.set('from', new Date(Date.now() + session.clockOffsetMs - days * DAY_MS).toISOString());
  if (channel !== null) query.set('channel', channel);
  /** @type {Concurrency} */
  let answer;
  try {
    const response = await read(`/analytics/concurrency?${query}`, AbortSignal.any([signal, mine.signal]));
    answer = /** @type {Concurrency} */ (await response.json());
  } catch (error) {
    if (mine.signal.aborted && !signal.aborted) return;
    // 400: not this far back (--max-days); it does not get better by asking again.
    if (error instanceof Refused && error.status === 400) {
      showHistoryMessage(error.message);
      return;
    }
    throw error;
  }
  if (mine.signal.aborted) return;
  showHistoryMessage(null);
  showHistory(range, answer);
}

/**
 * Reads /events with fetch (EventSource cannot send the token) until aborted, reconnecting when the stream ends.
 * @param {AbortSignal} signal
 * @param {() => void} onChange
 */
async function live(signal, onChange) {
  let retryMs = 2000;
  while (!signal.aborted) {
    try {
      const response = await read('/events', signal);
      setHealth('stream', 'live');
      // The service answers /events with a stream, so an ok response has a body (null is for 204 and the like).
      await readEvents(
        /** @type {NonNullable<Response['body']>} */ (response.body),
        signal,
        (event, data) => {
          if (event !== 'online') return;
          const figures = /** @type {LiveFigures} */ (JSON.parse(data));
          session.liveAtMs = Date.now();
          setNumber('online', figures.online_clients_count);
          showChannels(figures.channels);
          if (figures.peak_today !== undefined) showPeakToday(figures.peak_today);
          const shown = JSON.stringify([figures.online_clients_count, figures.channels]);
          if (shown !== session.liveFigures) onChange();
          session.liveFigures = shown;
        },
        (ms) => (retryMs = ms),
      );
    } catch (error) {
      if (error instanceof Unauthorized || signal.aborted) throw error;
    }
    setHealth('stream', 'reconnecting');
    await sleep(retryMs, signal);
  }
}

/**
 * A Server-Sent Events parser (the service ends lines with \n; a trailing \r is dropped).
 * @param {NonNullable<Response['body']>} body
 * @param {AbortSignal} signal
 * @param {(event: string, data: string) => void} onEvent
 * @param {(ms: number) => void} onRetry what a `retry:` field asks to wait before reconnecting
 */
async function readEvents(body, signal, onEvent, onRetry) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const cancel = () => void reader.cancel().catch(() => {});
  signal.addEventListener('abort', cancel, { once: true });
  let buffer = '';
  let event = '';
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      const lines = buffer.split('\n');
      buffer = lines.pop() ?? '';
      for (const raw of lines) {
        const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
        if (line === '') {
          if (data.length > 0) onEvent(event || 'message', data.join('\n'));
          event = '';
          data = [];
        } else if (!line.startsWith(':')) {
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const text = colon < 0 ? '' : line.slice(colon + (line[colon + 1] === ' ' ? 2 : 1));
          if (field === 'event') event = text;
          else if (field === 'data') data.push(text);
          else if (field === 'retry' && /^\d+$/.test(text)) onRetry(Number(text));
        }
      }
    }
  } finally {
    signal.removeEventListener('abort', cancel);
  }
}

/**
 * Runs `load` now and then every `everyMs()`; `soon(gapMs)` brings the next run forward to `gapMs` after the last.
 * @param {ReadName} name
 * @param {(signal: AbortSignal) => Promise<void>} load
 * @param {AbortSignal} signal
 * @param {() => number} everyMs
 */
function refresher(name, load, signal, everyMs) {
  let lastMs = 0;
  // clearTimeout(null) does nothing, as no timer has the id 0, though the DOM types take only number | undefined.
  /** @type {number | null} */
  let timer = null;
  let dueMs = Infinity;
  /** @param {number} gapMs */
  const plan = (gapMs) => {
    const at = Math.max(Date.now(), lastMs + gapMs);
    if (signal.aborted || at >= dueMs) return;
    clearTimeout(/** @type {number} */ (timer));
    dueMs = at;
    timer = setTimeout(() => void run(), at - Date.now());
  };
  const run = async () => {
    clearTimeout(/** @type {number} */ (timer));
    dueMs = Infinity;
    lastMs = Date.now();
    try {
      await load(signal);
      setHealth(name, true);
      plan(everyMs());
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof Unauthorized) return needToken();
      setHealth(name, false);
      plan(Math.min(everyMs(), RETRY_AFTER_ERROR_MS));
    }
  };
  signal.addEventListener('abort', () => clearTimeout(/** @type {number} */ (timer)), { once: true });
  return { run, soon: plan };
}

function start() {
  session.controller.abort();
  const controller = new AbortController();
  session.controller = controller;
  const { signal } = controller;
  $('token-form').hidden = true;
  $('figures').hidden = false;
  health.stream = 'connecting';
  health.failing.clear();
  setHealth('stream', 'connecting');
  const summary = refresher('summary', loadSummary, signal, () => SUMMARY_EVERY_MS);
  const daily = refresher('daily', loadDaily, signal, () => DAILY_EVERY_MS);
  const history = refresher('history', loadHistory, signal, () =>
    RANGES[view.range].interval === 'minute' ? HISTORY_BY_MINUTE_EVERY_MS : HISTORY_EVERY_MS,
  );
  showHistoryMessage(null);
  showView();
  session.changeView = (change) => {
    Object.assign(view, change);
    showView();
    void history.run();
  };
  // Reads are spaced out, so their order is what a person sees first: the figures, then live, then the charts.
  (async () => {
    await summary.run();
    const stream = live(signal, () => {
      summary.soon(SUMMARY_AFTER_CHANGE_MS);
      history.soon(HISTORY_AFTER_CHANGE_MS);
      daily.soon(DAILY_AFTER_CHANGE_MS);
    });
    await history.run();
    await daily.run();
    await stream;
  })().catch((error) => {
    if (error instanceof Unauthorized) needToken();
    else if (!signal.aborted) setStatus('error', String(error));
  });
}

// ---- the token -------------------------------------------------------------------------------

/** A token in the URL fragment (never sent to the server) moves to sessionStorage and out of the address bar. */
function takeToken() {
  try {
    const match = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (match) {
      sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1] ?? ''));
      history.replaceState(null, '', location.pathname + location.search);
    }
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

function needToken() {
  session.controller.abort();
  const refused = Boolean(session.token);
  session.token = null;
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage is off (private mode, policy): nothing was kept, so nothing to forget.
  }
  $('token-message').textContent = refused
    ? 'That token was refused. Enter the API token of this service.'
    : 'This service needs an API token to show its figures.';
  $('figures').hidden = true;
  $('token-form').hidden = false;
  setStatus('token', 'Needs a token');
  $('token-input').focus();
}

$('channels').addEventListener('click', (event) => {
  const button = /** @type {Element} */ (event.target).closest('button[data-channel]');
  if (button instanceof HTMLElement) session.changeView({ channel: button.dataset.channel ?? null });
});
$('history-total').addEventListener('click', () => session.changeView({ channel: null }));
for (const button of document.querySelectorAll('.ranges button')) {
  button.addEventListener('click', () => {
    const range = /** @type {HTMLElement} */ (button).dataset.range;
    if (range && range in RANGES) session.changeView({ range: /** @type {RangeName} */ (range) });
  });
}

$('token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = /** @type {HTMLInputElement} */ ($('token-input'));
  session.token = input.value.trim();
  input.value = '';
  try {
    sessionStorage.setItem(TOKEN_KEY, session.token);
  } catch {
    // Storage is off: the token lasts for this page only.
  }
  start();
});

/** A random id per browser, so this dashboard has a read budget of its own. */
function dashboardId() {
  const fresh = () =>
    `dashboard-${Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, '0')).join('')}`;
  try {
    let id = localStorage.getItem(ID_KEY);
    if (!id) localStorage.setItem(ID_KEY, (id = fresh()));
    return id;
  } catch {
    return fresh();
  }
}

// ---- showing figures -------------------------------------------------------------------------

/**
 * `setHealth('stream', state)` for the live stream; `setHealth(read, ok)` for the other reads.
 * @type {(...args: ['stream', StreamState] | [ReadName, boolean]) => void}
 */
function setHealth(part, value) {
  // The @type pairs 'stream' with a StreamState, but narrowing one parameter by another needs an arrow function.
  if (part === 'stream') health.stream = /** @type {StreamState} */ (value);
  else if (value) health.failing.delete(part);
  else health.failing.add(part);
  if (health.failing.size > 0) setStatus('error', 'Service unavailable, retrying');
  else if (health.stream === 'live') setStatus('live', 'Live');
  else if (health.stream === 'reconnecting') setStatus('reconnecting', 'Reconnecting…');
  else setStatus('connecting', 'Connecting…');
}

/**
 * @param {StreamState | 'error' | 'token'} state what dashboard.css styles the status line by
 * @param {string} text
 */
function setStatus(state, text) {
  const status = $('status');
  status.dataset.state = state;
  status.textContent = text;
}

/**
 * @param {string} id
 * @param {number} value
 */
function setNumber(id, value) {
  const element = $(id);
  element.dataset.value = String(value);
  element.textContent = numbers.format(value);
}

/** @param {Channel[]} channels */
function showChannels(channels) {
  const list = $('channels');
  const most = Math.max(1, ...channels.map((c) => c.online));
  list.replaceChildren(
    ...channels.map(({ channel, online }) => {
      const item = document.createElement('li');
      item.dataset.channel = channel;
      item.dataset.online = String(online);
      // A button: a click shows this channel's history in the chart.
      const name = Object.assign(document.createElement('button'), {
        type: 'button',
        className: 'name',
        textContent: channel,
        title: `${channel}: show its history`,
      });
      name.dataset.channel = channel;
      name.setAttribute('aria-pressed', String(view.channel === channel));
      const count = Object.assign(document.createElement('span'), {
        className: 'count',
        textContent: numbers.format(online),
      });
      const bar = Object.assign(document.createElement('span'), { className: 'bar' });
      bar.style.width = `${(online / most) * 100}%`;
      item.append(name, count, bar);
      return item;
    }),
  );
  $('channels-empty').hidden = channels.length > 0;
}

/** @param {DayFigures[]} days */
function showTable(days) {
  /** @type {HTMLTableElement} */ ($('daily')).tBodies[0]?.replaceChildren(
    ...days
      .slice()
      .reverse()
      .map((d) => {
        const row = document.createElement('tr');
        row.dataset.day = d.day;
        const cells = [
          d.day,
          numbers.format(d.dau),
          numbers.format(d.wau),
          numbers.format(d.mau),
          numbers.format(d.new),
          `${Math.round(d.stickiness * 100)}%`,
        ];
        row.append(
          ...cells.map((text, i) =>
            Object.assign(document.createElement(i === 0 ? 'th' : 'td'), { textContent: text }),
          ),
        );
        for (const key of /** @type {const} */ (['dau', 'wau', 'mau', 'new'])) row.dataset[key] = String(d[key]);
        return row;
      }),
  );
}

/**
 * @param {Peak | null} peak today's, or null while not known yet
 */
function showPeakToday(peak) {
  const element = $('peak-today');
  if (!peak) {
    element.dataset.value = '';
    element.dataset.at = '';
    element.textContent = '–';
    $('peak-today-at').textContent = 'not kept by this store';
    return;
  }
  setNumber('peak-today', peak.online);
  element.dataset.at = peak.at ?? '';
  $('peak-today-at').textContent = peak.at ? `at ${formatTime(Date.parse(peak.at))}` : 'no one online yet today';
  // Today's peak is the all-time one the moment it passes it: no need to wait for the next summary.
  if (session.record && peak.online > session.record.online) {
    session.record = peak;
    showRecord();
  }
}

function showRecord() {
  const record = session.record;
  const element = $('record');
  if (!record) {
    element.dataset.value = '';
    element.dataset.at = '';
    element.textContent = '–';
    $('record-at').textContent = '';
    return;
  }
  setNumber('record', record.online);
  element.dataset.at = record.at ?? '';
  $('record-at').textContent = record.at ? `on ${formatDate(Date.parse(record.at))}` : 'no one online yet';
}

/** The range picker's and the channel list's state, and what the chart of online over time is of. */
function showView() {
  for (const button of document.querySelectorAll('.ranges button'))
    button.setAttribute('aria-pressed', String(/** @type {HTMLElement} */ (button).dataset.range === view.range));
  for (const button of document.querySelectorAll('#channels button[data-channel]'))
    button.setAttribute('aria-pressed', String(/** @type {HTMLElement} */ (button).dataset.channel === view.channel));
  $('history-of').textContent = view.channel === null ? 'All channels' : `Channel “${view.channel}”`;
  $('history-total').hidden = view.channel === null;
}

/** @param {string | null} message why there is no chart of online over time, or null: there is one */
function showHistoryMessage(message) {
  $('history-message').hidden = message === null;
  $('history-message').textContent = message ?? '';
  $('history').hidden = message !== null;
}

// ---- charts (uPlot) --------------------------------------------------------------------------

/** The axes' font, also used to measure their labels, so that the y axis is as wide as its widest label. */
const AXIS_FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
const AXIS_GAP_PX = 6;
const TICK_PX = 4;
const CHART_HEIGHT_PX = 220;
/** Steps between y-axis ticks: whole people only. */
const WHOLE_STEPS = [1, 2, 5]
  .flatMap((m) => Array.from({ length: 10 }, (_, power) => m * 10 ** power))
  .sort((a, b) => a - b);

const measuring = /** @type {CanvasRenderingContext2D} */ (document.createElement('canvas').getContext('2d'));

/** @param {string[]} labels */
function widestPx(labels) {
  measuring.font = AXIS_FONT;
  return Math.max(0, ...labels.map((label) => measuring.measureText(label).width));
}

/** @param {string} name a colour of dashboard.css's :root */
const color = (name) => getComputedStyle(document.documentElement).getPropertyValue(`--${name}`).trim();

/**
 * A #rrggbb colour at an opacity.
 * @param {string} hex
 * @param {number} alpha
 */
function translucent(hex, alpha) {
  const value = Number.parseInt(hex.slice(1), 16);
  return `rgba(${(value >> 16) & 255}, ${(value >> 8) & 255}, ${value & 255}, ${alpha})`;
}

/** @type {Map<string, Intl.DateTimeFormat>} */
const formats = new Map();
/**
 * @param {Intl.DateTimeFormatOptions} options
 * @param {string} timeZone
 */
function format(options, timeZone) {
  const key = JSON.stringify([options, timeZone]);
  let found = formats.get(key);
  if (!found) formats.set(key, (found = new Intl.DateTimeFormat(undefined, { ...options, timeZone })));
  return found;
}
/** HH:MM of an instant in the service's time zone. @param {number} ms */
const formatTime = (ms) =>
  format({ hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }, session.timeZone).format(ms);
/** The date of an instant in the service's time zone. @param {number} ms */
const formatDate = (ms) => format({ dateStyle: 'medium' }, session.timeZone).format(ms);
/** @param {number} ms @param {string} timeZone */
const formatDay = (ms, timeZone) => format({ month: 'short', day: 'numeric' }, timeZone).format(ms);

/**
 * A step of 1, 2, 2.5, 4 or 5 times a power of ten, whole, at least `rough`.
 * @param {number} rough
 * @returns {number}
 */
function niceStep(rough) {
  const power = 10 ** Math.floor(Math.log10(Math.max(1, rough)));
  for (const m of [1, 2, 2.5, 4, 5, 10]) if (m * power >= rough && Number.isInteger(m * power)) return m * power;
  return 10 * power;
}

/**
 * The y axis: whole numbers from 0, room above the highest for the peak's label, and as wide as its widest label
 * (a fixed width cut "8,000" to ",000" on a phone).
 * @param {HTMLElement} box where the labels drawn are noted (data-y-labels), for anyone checking them
 * @returns {{ scale: import('uplot').Scale, axis: import('uplot').Axis }}
 */
function countAxis(box) {
  return {
    scale: {
      range: (_u, _min, max) => {
        const top = Math.max(1, (max ?? 0) * 1.15);
        const step = niceStep(top / 4);
        return [0, Math.ceil(top / step) * step];
      },
    },
    axis: {
      font: AXIS_FONT,
      gap: AXIS_GAP_PX,
      ticks: { size: TICK_PX, stroke: color('line') },
      grid: { stroke: color('line'), width: 1 },
      stroke: color('muted'),
      incrs: WHOLE_STEPS,
      values: (_u, splits) => {
        const labels = splits.map((v) => numbers.format(v));
        box.dataset.yLabels = JSON.stringify(labels);
        return labels;
      },
      size: (_u, values) => Math.ceil(TICK_PX + AXIS_GAP_PX + widestPx(values ?? ['0']) + 2),
    },
  };
}

/**
 * The x axis of seconds since 1970: times of day (in `timeZone`) and dates at midnight, or dates only.
 * @param {string} timeZone
 * @returns {import('uplot').Axis}
 */
function timeAxis(timeZone) {
  return {
    font: AXIS_FONT,
    gap: AXIS_GAP_PX,
    ticks: { size: TICK_PX, stroke: color('line') },
    grid: { stroke: color('line'), width: 1 },
    stroke: color('muted'),
    values: (_u, splits, _axis, _space, incr) =>
      splits.map((seconds) => {
        const ms = seconds * 1000;
        if (incr >= 86_400) return formatDay(ms, timeZone);
        const time = format({ hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }, timeZone).format(ms);
        return time === '00:00' ? formatDay(ms, timeZone) : time;
      }),
  };
}

/**
 * An x scale that also shows a single point (a fresh install's one day), `padSeconds` either side.
 * @param {number} padSeconds
 * @returns {import('uplot').Scale}
 */
const timeScale = (padSeconds) => ({
  time: true,
  range: (_u, min, max) => {
    const low = min ?? 0;
    const high = max ?? low;
    return low === high ? [low - padSeconds, high + padSeconds] : [low, high];
  },
});

/** The charts drawn, by the id of their box, and how to draw each again (on a resize or a change of theme). */
/** @type {Map<string, { plot: import('uplot'), redraw: () => void }>} */
const charts = new Map();

/**
 * Draws (or draws anew) the chart in `box`, as wide as the box.
 * @param {HTMLElement} box
 * @param {Omit<import('uplot').Options, 'width' | 'height'>} options
 * @param {import('uplot').AlignedData} data
 * @param {() => void} redraw
 */
function draw(box, options, data, redraw) {
  charts.get(box.id)?.plot.destroy();
  const plot = new uPlot(
    {
      ...options,
      width: Math.max(200, box.clientWidth),
      height: CHART_HEIGHT_PX,
      cursor: { ...options.cursor, drag: { x: false, y: false } },
    },
    data,
    box,
  );
  charts.set(box.id, { plot, redraw });
}

const resized = new ResizeObserver((entries) => {
  for (const { target } of entries) {
    const chart = charts.get(target.id);
    if (chart) chart.plot.setSize({ width: Math.max(200, target.clientWidth), height: CHART_HEIGHT_PX });
  }
});
resized.observe($('history'));
resized.observe($('chart'));
// Canvas colours are taken from the stylesheet when drawn: a change of theme draws again.
matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => {
  for (const chart of charts.values()) chart.redraw();
});

/**
 * The daily, weekly and monthly actives, one point a day.
 * @param {DayFigures[]} days oldest first
 */
function showDaily(days) {
  const box = $('chart');
  // A day's key as midnight UTC: the axis then names the service's own days, whatever its time zone.
  const x = days.map((d) => Date.parse(`${d.day}T00:00:00Z`) / 1000);
  const { scale, axis } = countAxis(box);
  /** @param {string} label @param {string} name */
  const series = (label, name) => ({ label, stroke: color(name), width: 2, value: numberValue });
  draw(
    box,
    {
      scales: { x: timeScale(43_200), y: scale },
      axes: [timeAxis('UTC'), axis],
      series: [
        { label: 'Day', value: (_u, seconds) => (seconds === null ? '–' : `${formatDay(seconds * 1000, 'UTC')}`) },
        series('Daily', 'dau'),
        series('Weekly (7 days)', 'wau'),
        series('Monthly (30 days)', 'mau'),
      ],
    },
    [x, days.map((d) => d.dau), days.map((d) => d.wau), days.map((d) => d.mau)],
    () => showDaily(days),
  );
  box.dataset.days = String(days.length);
}

/** @param {import('uplot')} _u @param {number | null} v */
const numberValue = (_u, v) => (v === null ? '–' : numbers.format(v));

/**
 * Online over time: the most online in each interval as the line, a band down to the fewest, and the range's peak
 * marked. The box notes what it shows (data-range, -interval, -channel, -points, -peak, -peak-at).
 * @param {RangeName} range
 * @param {Concurrency} answer
 */
function showHistory(range, answer) {
  const box = $('history');
  const { points, interval } = answer;
  const x = points.map((p) => Date.parse(p.start) / 1000);
  // The first point of the highest count: when the peak was first reached.
  let peak = -1;
  points.forEach((p, i) => {
    if (peak < 0 || p.max > (points[peak]?.max ?? 0)) peak = i;
  });
  const peakPoint = points[peak];
  const timeZone = session.timeZone;
  /** @param {number} seconds */
  const when = (seconds) =>
    interval === 'day'
      ? formatDay(seconds * 1000, timeZone)
      : `${formatDay(seconds * 1000, timeZone)} ${formatTime(seconds * 1000)}`;
  const line = color('dau');
  const { scale, axis } = countAxis(box);
  draw(
    box,
    {
      scales: { x: timeScale(INTERVAL_SECONDS[interval] / 2), y: scale },
      axes: [timeAxis(timeZone), axis],
      series: [
        {
          label: interval === 'day' ? 'Day' : 'From',
          value: (_u, seconds) => (seconds === null ? '–' : when(seconds)),
        },
        { label: 'Most online', stroke: line, width: 2, value: numberValue },
        { label: 'Fewest', stroke: translucent(line, 0.45), width: 1, value: numberValue },
      ],
      bands: [{ series: [1, 2], fill: translucent(line, 0.14) }],
      plugins: peakPoint ? [peakMarker(peak, `peak ${numbers.format(peakPoint.max)} · ${when(x[peak] ?? 0)}`)] : [],
    },
    [x, points.map((p) => p.max), points.map((p) => p.min)],
    () => showHistory(range, answer),
  );
  Object.assign(box.dataset, {
    range,
    interval,
    channel: answer.channel ?? '',
    points: String(points.length),
    peak: String(peakPoint?.max ?? 0),
    peakAt: peakPoint?.start ?? '',
  });
}

/**
 * Marks point `index` of the first series with a dot and `label`, kept inside the plot.
 * @param {number} index
 * @param {string} label
 * @returns {import('uplot').Plugin}
 */
function peakMarker(index, label) {
  return {
    hooks: {
      draw: [
        (u) => {
          const seconds = u.data[0][index];
          const value = u.data[1]?.[index];
          if (seconds === undefined || value === undefined || value === null) return;
          const ratio = uPlot.pxRatio;
          const cx = u.valToPos(seconds, 'x', true);
          const cy = u.valToPos(value, 'y', true);
          const { ctx, bbox } = u;
          ctx.save();
          ctx.fillStyle = color('fg');
          ctx.beginPath();
          ctx.arc(cx, cy, 4 * ratio, 0, 2 * Math.PI);
          ctx.fill();
          ctx.font = `600 ${12 * ratio}px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif`;
          const width = ctx.measureText(label).width;
          const gap = 8 * ratio;
          const right = cx + gap + width <= bbox.left + bbox.width;
          ctx.textAlign = right ? 'left' : 'right';
          ctx.textBaseline = cy - 16 * ratio >= bbox.top ? 'bottom' : 'top';
          ctx.fillText(
            label,
            right ? cx + gap : cx - gap,
            ctx.textBaseline === 'bottom' ? cy - 4 * ratio : cy + 4 * ratio,
          );
          ctx.restore();
        },
      ],
    },
  };
}

start();
