// What a benchmark case reports: rows of measure, value, target and verdict, printed as one Markdown table per case.

export type Verdict = 'pass' | 'FAIL' | 'info';

export interface Row {
  case: string;
  measure: string;
  value: string;
  target: string;
  verdict: Verdict;
}

export interface CaseReport {
  title: string;
  rows: Row[];
  /** Lines printed under the table: how a figure was taken, why one looks odd. */
  notes: string[];
}

/** The verdict of a figure against an upper bound (`max`) or a lower bound (`min`). */
export function against(value: number, bound: { max: number } | { min: number }): Verdict {
  if (!Number.isFinite(value)) return 'FAIL';
  return ('max' in bound ? value <= bound.max : value >= bound.min) ? 'pass' : 'FAIL';
}

/** A whole number with thousands separators: 12,345. */
export const count = (value: number): string => Math.round(value).toLocaleString('en-US');

/** Milliseconds, two decimals below 10 ms (where the targets are), whole above. */
export const ms = (value: number): string =>
  !Number.isFinite(value) ? 'n/a' : value < 10 ? `${value.toFixed(2)} ms` : `${count(value)} ms`;

/** Bytes, in MB (10^6 bytes) from a million up. */
export const bytes = (value: number): string =>
  Math.abs(value) >= 1_000_000 ? `${(value / 1_000_000).toFixed(1)} MB` : `${count(value)} B`;

export const ratio = (value: number): string =>
  !Number.isFinite(value) ? 'n/a' : value < 100 ? value.toFixed(2) : count(value);

function markdownTable(rows: readonly Row[]): string {
  const cells = (row: readonly string[]) => `| ${row.map((cell) => cell.replaceAll('|', '\\|')).join(' | ')} |`;
  return [
    cells(['case', 'measure', 'value', 'target', 'verdict']),
    '| --- | --- | --- | --- | --- |',
    ...rows.map((row) => cells([row.case, row.measure, row.value, row.target, row.verdict])),
  ].join('\n');
}

export function printCase(report: CaseReport): string {
  const notes = report.notes.map((note) => `- ${note}`);
  return [`### ${report.title}`, '', markdownTable(report.rows), ...(notes.length > 0 ? ['', ...notes] : []), ''].join(
    '\n',
  );
}
