// The JSON of a concurrency answer written straight into bytes: a 24-hour answer is 1,441 points, and the strings made
// per point and per timestamp were most of what each read left to the garbage collector (a scavenge every 15 reads).
import type { ConcurrencyPoint } from '../store/store.js';

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
/** `,{"start":"<24>","max":<10>,"min":<10>,"mean":<10>.<3>}` with room to spare. */
const POINT_BYTES = 112;

const START = Buffer.from('{"start":"', 'latin1');
const MAX = Buffer.from('","max":', 'latin1');
const MIN = Buffer.from(',"min":', 'latin1');
const MEAN = Buffer.from(',"mean":', 'latin1');
const MINUTE_END = Buffer.from(':00.000Z', 'latin1');

/** The mean as the answer gives it: rounded to thousandths, written as JSON writes that number. */
export const roundedMean = (mean: number): number => Math.round(mean * 1000) / 1000;

/**
 * `{"interval", "channel", "points": [{"start", "max", "min", "mean"}]}`, the same text as JSON.stringify of that
 * object with each mean rounded by roundedMean().
 */
export function pointsJson(interval: string, channel: string | null, points: readonly ConcurrencyPoint[]): Buffer {
  const head = `{"interval":${JSON.stringify(interval)},"channel":${JSON.stringify(channel)},"points":[`;
  const headBytes = Buffer.byteLength(head);
  const out = Buffer.allocUnsafe(headBytes + points.length * POINT_BYTES + 2);
  let at = out.write(head, 0);
  let prefixHourMs = Number.NaN;
  const prefix = Buffer.alloc(14);
  for (let i = 0; i < points.length; i++) {
    const point = points[i] as ConcurrencyPoint;
    if (i > 0) out[at++] = 0x2c; // ,
    at += START.copy(out, at);
    const { startMs } = point;
    if (startMs % MINUTE_MS === 0) {
      const hourMs = startMs - (((startMs % HOUR_MS) + HOUR_MS) % HOUR_MS);
      if (hourMs !== prefixHourMs) {
        prefixHourMs = hourMs;
        prefix.write(new Date(hourMs).toISOString().slice(0, 14), 0, 'latin1');
      }
      at += prefix.copy(out, at);
      const minute = (startMs - hourMs) / MINUTE_MS;
      out[at++] = 0x30 + Math.floor(minute / 10);
      out[at++] = 0x30 + (minute % 10);
      at += MINUTE_END.copy(out, at);
    } else at += out.write(new Date(startMs).toISOString(), at, 'latin1');
    at += MAX.copy(out, at);
    at = writeNumber(out, at, point.max);
    at += MIN.copy(out, at);
    at = writeNumber(out, at, point.min);
    at += MEAN.copy(out, at);
    at = writeThousandths(out, at, Math.round(point.mean * 1000));
    out[at++] = 0x7d; // }
  }
  out[at++] = 0x5d; // ]
  out[at++] = 0x7d; // }
  return out.subarray(0, at);
}

/** A count: a whole number, written as JSON does (String of a small integer is V8's cached text, not a new string). */
function writeNumber(out: Buffer, at: number, value: number): number {
  return at + out.write(String(value), at, 'latin1');
}

/** `thousandths` / 1000 as JSON writes that number: the whole part, then up to three decimals without trailing 0s. */
function writeThousandths(out: Buffer, at: number, thousandths: number): number {
  if (thousandths < 0) {
    out[at++] = 0x2d; // -
    return writeThousandths(out, at, -thousandths);
  }
  let position = writeNumber(out, at, Math.floor(thousandths / 1000));
  let rest = thousandths % 1000;
  if (rest === 0) return position;
  out[position++] = 0x2e; // .
  for (let unit = 100; rest > 0; unit /= 10) {
    const digit = Math.floor(rest / unit);
    out[position++] = 0x30 + digit;
    rest -= digit * unit;
  }
  return position;
}
