// The alert rule syntax ("online{channel=checkout} < 5 for 10m"): parsed at boot, errors point at the column.
import { AlertRuleError } from './errors.js';

export type Comparison = '>' | '>=' | '<' | '<=';

/**
 * One threshold rule on the online count of the total or of one channel.
 *
 * Hysteresis (H) widens the way back, so a count wobbling at the threshold (T) does not fire and resolve on every
 * heartbeat. The rule fires while the condition holds; once firing, it resolves only when the count gets past
 * the far edge of the band:
 *
 * | rule     | fires while | resolves once    | H allowed  |
 * | -------- | ----------- | ---------------- | ---------- |
 * | `> T`    | count > T   | count <= T - H   | H <= T     |
 * | `>= T`   | count >= T  | count <  T - H   | H <  T     |
 * | `< T`    | count < T   | count >= T + H   | any        |
 * | `<= T`   | count <= T  | count >  T + H   | any        |
 *
 * With H = 0 a rule resolves as soon as its condition stops holding. Between the condition and the far edge a
 * firing rule stays firing. The H limits for `>`/`>=` exclude rules that could never resolve (counts are >= 0).
 */
export interface AlertRule {
  /**
   * The rule as written, normalised: its identity in events and saved state. Single spaces, no quotes around
   * the channel, no "_" in numbers, the duration in the largest unit that keeps it whole ("90m" for "1.5h"),
   * and no "hysteresis 0".
   */
  text: string;
  /** null: the total online count; else the channel name. */
  channel: string | null;
  comparison: Comparison;
  /** A non-negative integer. */
  threshold: number;
  /** How long the condition must hold before the rule fires (0: at once). */
  forMs: number;
  /** How far past the threshold the count must come back before the rule resolves (see the table above). */
  hysteresis: number;
}

const MAX_INTEGER = 1_000_000_000;
const MAX_CHANNEL_LENGTH = 64;
const MAX_DURATION_MS = 7 * 86_400_000;
/** Largest first, so a normalised duration takes the largest unit that keeps it whole. */
const UNITS_MS: ReadonlyArray<readonly [string, number]> = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1_000],
  ['ms', 1],
];
const CHANNEL_CHAR = /[A-Za-z0-9_.:/-]/;
const EXPECTED_COMPARISON = 'expected a comparison: >, >=, <, <=';

function formatDuration(ms: number): string {
  for (const [unit, unitMs] of UNITS_MS) if (ms % unitMs === 0) return `${ms / unitMs}${unit}`;
  return `${ms}ms`; // unreachable: every whole ms is a multiple of 1
}

/** A cursor over one rule's text; positions are 0-based inside, 1-based in errors. */
class RuleParser {
  private at = 0;
  /** Where the text ends once trailing whitespace is dropped: "ran out" is reported just after the last character. */
  private readonly contentEnd: number;

  constructor(private readonly text: string) {
    this.contentEnd = text.trimEnd().length;
  }

  parse(): AlertRule {
    this.skipSpace();
    this.keyword('online', 'expected "online"');
    this.skipSpace();
    let channel: string | null = null;
    if (this.peek() === '{') {
      this.at++;
      channel = this.selector();
      this.skipSpace();
    }
    const comparison = this.comparison();
    this.skipSpace();
    const thresholdAt = this.at;
    const threshold = this.integer();
    if (comparison === '<' && threshold === 0) {
      this.fail(thresholdAt, 'online < 0 can never hold: a count is never below 0');
    }

    let forMs = 0;
    let hysteresis = 0;
    let seenFor = false;
    let seenHysteresis = false;
    for (;;) {
      this.skipSpace();
      if (this.at >= this.text.length) break;
      const wordAt = this.at;
      const word = this.word();
      if (word === 'for' && !seenFor && !seenHysteresis) {
        seenFor = true;
        this.skipSpace();
        forMs = this.duration();
      } else if (word === 'hysteresis' && !seenHysteresis) {
        seenHysteresis = true;
        this.skipSpace();
        const hysteresisAt = this.at;
        hysteresis = this.integer();
        checkHysteresis(comparison, threshold, hysteresis, (problem) => this.fail(hysteresisAt, problem));
      } else {
        const options = [!seenFor && !seenHysteresis && '"for", ', !seenHysteresis && '"hysteresis" or '];
        this.fail(wordAt, `expected ${options.filter(Boolean).join('')}the end of the rule`);
      }
    }

    const selector = channel === null ? '' : `{channel=${channel}}`;
    const text =
      `online${selector} ${comparison} ${threshold}` +
      (forMs > 0 ? ` for ${formatDuration(forMs)}` : '') +
      (hysteresis > 0 ? ` hysteresis ${hysteresis}` : '');
    return { text, channel, comparison, threshold, forMs, hysteresis };
  }

  /** `channel = name }` after the "{". */
  private selector(): string {
    this.skipSpace();
    this.keyword('channel', 'expected "channel"');
    this.skipSpace();
    if (this.peek() !== '=') this.fail(this.at, 'expected "="');
    this.at++;
    this.skipSpace();
    const quoted = this.peek() === '"';
    if (quoted) this.at++;
    const nameAt = this.at;
    while (this.at < this.text.length && CHANNEL_CHAR.test(this.text.charAt(this.at))) this.at++;
    const name = this.text.slice(nameAt, this.at);
    if (name.length === 0) {
      this.fail(nameAt, `expected a channel name (1 to ${MAX_CHANNEL_LENGTH} of A-Z a-z 0-9 _ . : / -)`);
    }
    if (name.length > MAX_CHANNEL_LENGTH) {
      this.fail(nameAt, `a channel name is at most ${MAX_CHANNEL_LENGTH} characters (this one has ${name.length})`);
    }
    if (quoted) {
      if (this.peek() !== '"') this.fail(this.at, "expected a channel name character (A-Z a-z 0-9 _ . : / -) or '\"'");
      this.at++;
    }
    this.skipSpace();
    if (this.peek() !== '}') this.fail(this.at, 'expected "}"');
    this.at++;
    return name;
  }

  private comparison(): Comparison {
    const first = this.peek();
    if (first !== '>' && first !== '<') this.fail(this.at, EXPECTED_COMPARISON);
    this.at++;
    if (this.peek() === '=') {
      this.at++;
      return first === '>' ? '>=' : '<=';
    }
    return first === '>' ? '>' : '<';
  }

  /** Decimal digits, "_" allowed as a thousands separator (1_000, 25_000_000). */
  private integer(): number {
    const startAt = this.at;
    if (!isDigit(this.peek())) this.fail(startAt, 'expected a number');
    while (isDigit(this.peek()) || this.peek() === '_') this.at++;
    const written = this.text.slice(startAt, this.at);
    if (this.peek() === '.') this.fail(this.at, 'expected a whole number');
    const groups = written.split('_');
    const separated = groups.length > 1;
    for (let i = 0; i < groups.length; i++) {
      const group = groups[i] ?? '';
      const fits = i === 0 ? group.length >= 1 && (!separated || group.length <= 3) : group.length === 3;
      if (!fits) {
        const groupAt = startAt + groups.slice(0, i).join('_').length + (i > 0 ? 1 : 0);
        this.fail(groupAt, '"_" may only separate thousands (1_000, 25_000_000)');
      }
    }
    const value = Number(groups.join(''));
    if (value > MAX_INTEGER) this.fail(startAt, `expected a number from 0 to ${MAX_INTEGER}`);
    return value;
  }

  /** A positive number and a unit (30s, 10m, 1.5h): whole milliseconds, at most 7 days. */
  private duration(): number {
    const startAt = this.at;
    if (!isDigit(this.peek())) this.fail(startAt, 'expected a duration, e.g. 30s, 10m, 1.5h');
    while (isDigit(this.peek())) this.at++;
    let fractionDigits = 0;
    if (this.peek() === '.') {
      this.at++;
      if (!isDigit(this.peek())) this.fail(this.at, 'expected a digit after "."');
      while (isDigit(this.peek())) {
        this.at++;
        fractionDigits++;
      }
    }
    const number = this.text.slice(startAt, this.at);
    const unitAt = this.at;
    const unit = this.word();
    const unitMs = UNITS_MS.find(([name]) => name === unit)?.[1];
    if (unitMs === undefined) this.fail(unitAt, 'expected a unit: ms, s, m, h or d');
    // In integers (digits without the point, then scaled), so 1.1s is exactly 1100 ms, not 1100.0000000000002.
    const scaled = Number(number.replace('.', ''));
    const ms = (scaled * unitMs) / 10 ** fractionDigits;
    if (scaled === 0) this.fail(startAt, 'a duration must be positive');
    if (ms > MAX_DURATION_MS) this.fail(startAt, 'a duration is at most 7 days (7d)');
    if (!Number.isInteger(ms)) this.fail(startAt, 'a duration must be a whole number of milliseconds');
    return ms;
  }

  private keyword(expected: string, problem: string): void {
    const wordAt = this.at;
    if (this.word() !== expected) this.fail(wordAt, problem);
  }

  /** A run of letters (possibly empty). */
  private word(): string {
    const startAt = this.at;
    while (/[A-Za-z]/.test(this.peek())) this.at++;
    return this.text.slice(startAt, this.at);
  }

  private peek(): string {
    return this.text.charAt(this.at);
  }

  private skipSpace(): void {
    while (/\s/.test(this.peek())) this.at++;
  }

  private fail(at: number, problem: string): never {
    throw new AlertRuleError(this.text, Math.min(at, this.contentEnd) + 1, problem);
  }
}

function isDigit(char: string): boolean {
  return char >= '0' && char <= '9' && char.length === 1;
}

function checkHysteresis(
  comparison: Comparison,
  threshold: number,
  hysteresis: number,
  fail: (problem: string) => never,
): void {
  if (comparison === '>' && hysteresis > threshold) {
    fail(
      `hysteresis is at most the threshold (${threshold}) for ">": the rule resolves at count <= threshold - hysteresis`,
    );
  }
  if (comparison === '>=' && hysteresis > 0 && hysteresis >= threshold) {
    fail(
      `hysteresis is less than the threshold (${threshold}) for ">=": the rule resolves at count < threshold - hysteresis`,
    );
  }
}

/** Parses one rule; throws AlertRuleError. */
export function parseRule(text: string): AlertRule {
  return new RuleParser(text).parse();
}

/** Parses every rule; throws AlertRuleError for the first that does not parse or repeats an earlier one. */
export function parseRules(texts: readonly string[]): AlertRule[] {
  const rules: AlertRule[] = [];
  const firstIndex = new Map<string, number>();
  texts.forEach((text, index) => {
    const rule = parseRule(text);
    const earlier = firstIndex.get(rule.text);
    if (earlier !== undefined) {
      throw new AlertRuleError(text, 1, `the same rule as rule ${earlier + 1} ("${texts[earlier] ?? ''}")`);
    }
    firstIndex.set(rule.text, index);
    rules.push(rule);
  });
  return rules;
}
