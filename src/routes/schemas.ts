// Shared request and response schemas: one source for validation, TypeScript types and OpenAPI.
import { Type } from '@fastify/type-provider-typebox';
import { MAX_CLIENT_ID_LENGTH } from '../identity.js';

/** Printable ASCII, no leading or trailing space: the characters an HTTP header can carry. */
export const PRINTABLE = '^[\\x21-\\x7e]([\\x20-\\x7e]*[\\x21-\\x7e])?$';

export const ClientId = Type.String({
  minLength: 1,
  maxLength: MAX_CLIENT_ID_LENGTH,
  pattern: PRINTABLE,
  description: `The client's own stable id (at most ${MAX_CLIENT_ID_LENGTH} printable characters). Without one, the caller's address identifies it.`,
});

export const channelSchema = (maxLength: number) =>
  Type.String({
    minLength: 1,
    maxLength,
    pattern: PRINTABLE,
    description: `A page, room or part of the app (at most ${maxLength} printable characters).`,
  });

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
