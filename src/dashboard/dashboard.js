// @ts-check
// The dashboard's logic: first paint from /analytics/summary and /analytics/daily, then live figures from /events.
// One job (the page's one script, served as is, so not split into modules); types are JSDoc, checked by tsc.
// Reads go one at a time through one queue, under this browser's own X-Client-Id, so they stay within the read budget.

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
const RETRY_AFTER_ERROR_MS = 10_000;

// What the page reads from the API, as src/routes/analytics.ts and src/routes/events.ts declare it.
/** @typedef {{ channel: string, online: number }} Channel */
/**
 * GET /analytics/summary: online now, and the distinct clients active in the last 1, 7 and 30 days.
 * @typedef {object} Summary
 * @property {number} online_clients_count
 * @property {{ '1': number, '7': number, '30': number }} active
 * @property {Channel[]} top_channels
 * @property {string} time_zone
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
 * @typedef {{ online_clients_count: number, channels: Channel[], at: string }} LiveFigures
 */
/** @typedef {'connecting' | 'live' | 'reconnecting'} StreamState */
/** The reads besides the live stream, each with its own refresher. @typedef {'summary' | 'daily'} ReadName */

/** @param {string} id one of the elements index.html always has, so never null */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const numbers = new Intl.NumberFormat();

class Unauthorized extends Error {}

const session = {
  token: takeToken(),
  clientId: dashboardId(),
  controller: new AbortController(),
  /** When the last live event arrived: a summary read that began before it must not overwrite it. */
  liveAtMs: 0,
  /** The live figures last shown, to tell a change from a repeat (the first event after connecting). */
  liveFigures: '',
};

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
      await sleep(nextReadAtMs - Date.now(), signal);
      /** @type {Record<string, string>} */
      const headers = {
        accept: path === '/events' ? 'text/event-stream' : 'application/json',
        'x-client-id': session.clientId,
      };
      if (session.token) headers.authorization = `Bearer ${session.token}`;
      const response = await fetch(url, { headers, signal, cache: 'no-store' });
      nextReadAtMs = Date.now() + READ_GAP_MS;
      if (response.status === 429) {
        const seconds = Number(response.headers.get('retry-after'));
        nextReadAtMs = Date.now() + (Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : READ_GAP_MS);
        continue;
      }
      if (response.status === 401) throw new Unauthorized();
      if (!response.ok) throw new Error(`${path} answered ${response.status}`);
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
  if (session.liveAtMs < startedMs) {
    setNumber('online', summary.online_clients_count);
    showChannels(summary.top_channels);
    session.liveFigures = JSON.stringify([summary.online_clients_count, summary.top_channels]);
  }
  for (const days of /** @type {const} */ (['1', '7', '30'])) setNumber(`active-${days}`, summary.active[days]);
  $('zone').textContent = `Days in ${summary.time_zone}`;
}

/** @param {AbortSignal} signal */
async function loadDaily(signal) {
  const daily = /** @type {Daily} */ (await (await read('/analytics/daily', signal)).json());
  showChart(daily.days);
  showTable(daily.days);
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
 * Runs `load` now and then every `everyMs`; `soon(gapMs)` brings the next run forward to `gapMs` after the last.
 * @param {ReadName} name
 * @param {(signal: AbortSignal) => Promise<void>} load
 * @param {AbortSignal} signal
 * @param {number} everyMs
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
      plan(everyMs);
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof Unauthorized) return needToken();
      setHealth(name, false);
      plan(Math.min(everyMs, RETRY_AFTER_ERROR_MS));
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
  const summary = refresher('summary', loadSummary, signal, SUMMARY_EVERY_MS);
  const daily = refresher('daily', loadDaily, signal, DAILY_EVERY_MS);
  // Reads are spaced out, so their order is what a person sees first: the figures, then live, then the chart.
  (async () => {
    await summary.run();
    const stream = live(signal, () => {
      summary.soon(SUMMARY_AFTER_CHANGE_MS);
      daily.soon(DAILY_AFTER_CHANGE_MS);
    });
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
      const name = Object.assign(document.createElement('span'), {
        className: 'name',
        textContent: channel,
        title: channel,
      });
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

const SVG = 'http://www.w3.org/2000/svg';

/**
 * @param {string} name
 * @param {Record<string, string | number>} attributes
 * @param {string} [text]
 */
function svg(name, attributes, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

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

/** @param {DayFigures[]} days */
function showChart(days) {
  const W = 640,
    H = 220,
    left = 58,
    right = 12,
    top = 12,
    bottom = 26;
  const step = niceStep(Math.max(1, ...days.map((d) => d.mau)) / 4);
  const max = step * 4;
  const plotW = W - left - right;
  /** @param {number} i */
  const x = (i) => left + (days.length > 1 ? (i * plotW) / (days.length - 1) : plotW / 2);
  /** @param {number} v */
  const y = (v) => top + (H - top - bottom) * (1 - v / max);
  const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'chart-title' });
  for (let k = 0; k <= 4; k++) {
    chart.append(svg('line', { class: 'grid', x1: left, x2: W - right, y1: y(k * step), y2: y(k * step) }));
    chart.append(svg('text', { x: left - 6, y: y(k * step) + 4, 'text-anchor': 'end' }, numbers.format(k * step)));
  }
  const ticks = days.length > 2 ? [0, Math.floor((days.length - 1) / 2), days.length - 1] : days.map((_, i) => i);
  // Every tick is an index into days, so days[i] is there.
  for (const i of ticks) {
    const anchor = i === 0 && days.length > 1 ? 'start' : i === days.length - 1 && days.length > 1 ? 'end' : 'middle';
    chart.append(svg('text', { x: x(i), y: H - 6, 'text-anchor': anchor }, /** @type {DayFigures} */ (days[i]).day));
  }
  for (const series of /** @type {const} */ (['mau', 'wau', 'dau'])) {
    const points = days.map((d, i) => `${x(i).toFixed(1)},${y(d[series]).toFixed(1)}`).join(' ');
    chart.append(svg('polyline', { class: series, points: days.length === 1 ? `${points} ${points}` : points }));
  }
  const slot = days.length > 1 ? plotW / (days.length - 1) : plotW;
  days.forEach((d, i) => {
    const hit = svg('rect', { class: 'hit', x: x(i) - slot / 2, y: top, width: slot, height: H - top - bottom });
    hit.append(svg('title', {}, `${d.day}: daily ${d.dau}, weekly ${d.wau}, monthly ${d.mau}, new ${d.new}`));
    chart.append(hit);
  });
  $('chart').replaceChildren(chart);
}

start();
