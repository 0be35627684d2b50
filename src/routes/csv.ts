// CSV answers: asked for with `Accept: text/csv` or `?format=csv`, a header row and one line per row.
import { negotiate } from '@fastify/accept-negotiator';
import type { FastifyRequest } from 'fastify';
import { Type } from '@fastify/type-provider-typebox';

export const CSV_TYPE = 'text/csv; charset=utf-8';

/** The `format` query parameter of a route that can answer CSV. */
export const FormatQuery = Type.Optional(
  Type.Unsafe<'json' | 'csv'>({
    type: 'string',
    enum: ['json', 'csv'],
    description: 'csv: answer text/csv (as `Accept: text/csv` does); default json',
  }),
);

/** Whether the caller asked for CSV: `?format=csv`, or an Accept header that prefers text/csv to JSON. */
export function wantsCsv(request: FastifyRequest, format: 'json' | 'csv' | undefined): boolean {
  if (format !== undefined) return format === 'csv';
  const accept = request.headers.accept;
  return accept !== undefined && negotiate(accept, ['application/json', 'text/csv']) === 'text/csv';
}

/**
 * Written by hand, not with a CSV library: every field is a number, an ISO date or a YYYY-MM-DD day (nothing to
 * quote), and a library would add a dependency for a join.
 */
export function toCsv(header: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  return [header, ...rows].map((row) => row.join(',')).join('\r\n') + '\r\n';
}

/** A 200 answer that is JSON (`schema`) or CSV, for the OpenAPI document. */
export function jsonOrCsv(schema: ReturnType<typeof Type.Object>, description: string) {
  return {
    description,
    content: {
      'application/json': { schema },
      'text/csv': { schema: Type.String({ description: 'a header row, then one line per row' }) },
    },
  };
}
