// Shared request and response schemas: one source for validation, TypeScript types and OpenAPI.
// A schema with an $id nested in a route's schema becomes an OpenAPI component of that name.
import { Type } from '@fastify/type-provider-typebox';
import type { TSchema } from 'typebox';
import { MAX_CLIENT_ID_LENGTH } from '../identity.js';

/** Printable ASCII, no leading or trailing space: the characters an HTTP header can carry. */
export const PRINTABLE = '^[\\x21-\\x7e]([\\x20-\\x7e]*[\\x21-\\x7e])?$';

export const ClientId = Type.String({
  minLength: 1,
  maxLength: MAX_CLIENT_ID_LENGTH,
  pattern: PRINTABLE,
  description: `The client's own stable id (at most ${MAX_CLIENT_ID_LENGTH} printable characters). Without one, the caller's address identifies it.`,
  $id: 'ClientId',
});

export const channelSchema = (maxLength: number) =>
  Type.String({
    minLength: 1,
    maxLength,
    pattern: PRINTABLE,
    description: `A page, room or part of the app (at most ${maxLength} printable characters).`,
    $id: 'Channel',
  });

/** A channel and how many clients are online on it now. */
export const ChannelCount = Type.Object(
  { channel: Type.String(), online: Type.Integer({ minimum: 0 }) },
  { $id: 'ChannelCount' },
);

/**
 * A query parameter that validation fills in when it is left out (useDefaults, validation.ts):
 * optional to the caller, so not required in the OpenAPI document, and always there for the
 * handler, so typed as present.
 */
export function withDefault<T extends TSchema>(schema: T): T {
  if (!('default' in schema)) throw new Error('withDefault(): the schema has no default');
  // Returned as T, not TOptional<T>: the type drops the optional mark the schema keeps.
  return Type.Optional(schema);
}

export const ClientIdHeaders = Type.Object({
  'x-client-id': Type.Optional(ClientId),
});

export const ErrorBody = Type.Object(
  {
    statusCode: Type.Integer(),
    code: Type.String({ description: 'Stable error code, e.g. OS_RATE_LIMITED or FST_ERR_VALIDATION' }),
    error: Type.String(),
    message: Type.String({ description: 'What was wrong, naming the parameter' }),
    detail: Type.Optional(
      Type.String({ description: 'Same as message; the FastAPI demo answered errors in this field' }),
    ),
  },
  { $id: 'Error' },
);

export const errorResponses = {
  400: Type.Ref('Error'),
  429: Type.Ref('Error'),
  503: Type.Ref('Error'),
};
