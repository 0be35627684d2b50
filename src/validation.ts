// Request validation: bodies are checked strictly as sent; query strings and headers are coerced from text.
import { Ajv, type Options } from 'ajv';
import type { FastifySchemaCompiler } from 'fastify';

const common: Options = {
  // Unknown fields are refused (400), never silently stripped.
  removeAdditional: false,
  useDefaults: true,
  allErrors: false,
  strict: false,
};

// A body says what it means: `{"client_id": ["a"]}` or `{"client_id": 7}` is an error, not "a" or "7".
const strict = new Ajv({ ...common, coerceTypes: false });
// Query strings and headers are text: "7" must become the integer 7.
const coercing = new Ajv({ ...common, coerceTypes: true });

export const validatorCompiler: FastifySchemaCompiler<object> = ({ schema, httpPart }) =>
  (httpPart === 'body' ? strict : coercing).compile(schema);
