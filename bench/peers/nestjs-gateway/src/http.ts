/* Per-request plumbing shared by the guard, the handlers and the filter: the
 * request id and trace context, the identity, JSON bodies and query checks as
 * gateway/src/http.c does them. */
import { randomBytes, randomUUID } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Claims } from './auth.js';
import { badParam, FieldViolation, ProblemError } from './problem.js';
import { Json, JsonObject, ProtoRegistry } from './proto.js';

export interface GwState {
  requestId: string;
  traceparent: string;
  claims?: Claims;
}

declare module 'fastify' {
  interface FastifyRequest {
    gw: GwState;
  }
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

export function initRequest(req: FastifyRequest): void {
  const rid = req.headers['x-request-id'];
  const tp = req.headers['traceparent'];
  const m = typeof tp === 'string' ? TRACEPARENT.exec(tp) : null;
  const traceId = m && !/^0+$/.test(m[1]) && !/^0+$/.test(m[2]) ? m[1] : randomBytes(16).toString('hex');
  req.gw = {
    requestId: typeof rid === 'string' && REQUEST_ID.test(rid) ? rid : randomUUID(),
    traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01`,
  };
}

export function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

/* Only these query parameters (http_query_only): the first stranger is a 400; a
 * repeated parameter counts with its first value, as MHD's lookup gives it. */
export function queryOnly(req: FastifyRequest, allowed: readonly string[]): Record<string, string> {
  const q = (req.query ?? {}) as Record<string, string | string[]>;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(q)) {
    if (!allowed.includes(k)) throw badParam(`query.${k.slice(0, 60)}`, 'unknown query parameter');
    out[k] = Array.isArray(v) ? v[0] : v;
  }
  return out;
}

/* limit (1..100) and page_token (at most 512 characters). */
export function listParams(q: Record<string, string>): { limit: number; page_token: string } {
  let limit = 0;
  if (q.limit !== undefined) {
    if (!/^[0-9]+$/.test(q.limit) || Number(q.limit) < 1 || Number(q.limit) > 100)
      throw badParam('query.limit', 'must be an integer between 1 and 100');
    limit = Number(q.limit);
  }
  const token = q.page_token ?? '';
  if (token.length > 512) throw badParam('query.page_token', 'too long');
  return { limit, page_token: token };
}

/* The Idempotency-Key header: 1..128 printable ASCII characters. */
export function idempotencyKey(req: FastifyRequest): string {
  const k = header(req, 'idempotency-key');
  if (k === undefined || k.length < 1 || k.length > 128 || !/^[\x20-\x7e]+$/.test(k))
    throw badParam('Idempotency-Key', 'header required: 1..128 printable ASCII characters');
  return k;
}

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

export function pathId(id: string, notFound: string): string {
  if (!UUID.test(id)) throw new ProblemError(404, notFound);
  return id.toLowerCase();
}

export function isUuid(s: string): boolean {
  return UUID.test(s);
}

function lineColumn(text: string, pos: number): [number, number] {
  let line = 1;
  let col = 0;
  for (let i = 0; i < pos && i < text.length; i++) {
    if (text[i] === '\n') {
      line++;
      col = 0;
    } else col++;
  }
  return [line, col + 1];
}

/* The body as a JSON object: 415 unless application/json, 400 "malformed JSON at
 * line L column C" (where, never the parser's words), 400 unless an object. */
export function bodyJson(req: FastifyRequest, required: boolean): JsonObject | null {
  const raw = req.body as Buffer | undefined;
  if (!raw || raw.length === 0) {
    if (required) throw new ProblemError(400, 'a JSON object body is required');
    return null;
  }
  const ct = header(req, 'content-type');
  if (!ct || !/^application\/json(?:$|[; ])/i.test(ct)) throw new ProblemError(415, 'the body must be application/json');
  const text = raw.toString('utf8');
  let v: Json;
  try {
    v = JSON.parse(text) as Json;
  } catch (e) {
    const m = /position (\d+)/.exec((e as Error).message);
    const [line, col] = lineColumn(text, m ? Number(m[1]) : text.length);
    throw new ProblemError(400, `malformed JSON at line ${line} column ${col}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw new ProblemError(400, 'malformed JSON: the body must be a JSON object', []);
  return v;
}

/* The body as a request message of type (json_pb rules), deny: fields the client
 * may not set. */
export function bodyMessage(protos: ProtoRegistry, req: FastifyRequest, type: string, deny: readonly string[], required = true): [Record<string, unknown>, JsonObject] {
  const obj = bodyJson(req, required) ?? {};
  const violations: FieldViolation[] = [];
  const msg = protos.fromJson(type, obj, deny, violations);
  if (violations.length > 0) throw new ProblemError(400, 'invalid request', violations);
  return [msg, obj];
}

export function setHeaders(reply: FastifyReply, h: Record<string, string>): void {
  for (const [k, v] of Object.entries(h)) reply.header(k, v);
}
