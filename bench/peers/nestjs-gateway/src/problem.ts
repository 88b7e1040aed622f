/* RFC 9457 problem+json answers and the gRPC -> HTTP status table, as
 * gateway/src/problem.c makes them. */
import { status as GrpcStatus } from '@grpc/grpc-js';

export interface FieldViolation {
  field: string;
  description: string;
}

export const PROBLEM_BASE = 'https://shop-fleet.example/problems/';

const TYPES: Record<number, [string, string]> = {
  400: ['validation', 'Bad Request'],
  401: ['unauthenticated', 'Unauthorized'],
  403: ['forbidden', 'Forbidden'],
  404: ['not-found', 'Not Found'],
  405: ['method-not-allowed', 'Method Not Allowed'],
  409: ['conflict', 'Conflict'],
  412: ['precondition-failed', 'Precondition Failed'],
  413: ['payload-too-large', 'Content Too Large'],
  415: ['unsupported-media-type', 'Unsupported Media Type'],
  422: ['unprocessable', 'Unprocessable Content'],
  429: ['rate-limited', 'Too Many Requests'],
  500: ['internal', 'Internal Server Error'],
  503: ['unavailable', 'Service Unavailable'],
  504: ['timeout', 'Gateway Timeout'],
};

/* An answer that stops a request: thrown by guards and handlers, rendered by the
 * exception filter. */
export class ProblemError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
    readonly violations?: FieldViolation[],
    readonly headers: Record<string, string> = {},
    readonly keyReused = false,
  ) {
    super(detail);
  }
}

export function problemBody(e: ProblemError, requestId: string): Record<string, unknown> {
  const [kind, title] = e.keyReused
    ? ['idempotency-key-reused', 'Idempotency-Key Reused']
    : (TYPES[e.status] ?? ['', 'Error']);
  const body: Record<string, unknown> = {
    type: kind ? PROBLEM_BASE + kind : 'about:blank',
    title,
    status: e.status,
    detail: e.detail || title,
    request_id: requestId,
  };
  if ((e.violations && e.violations.length > 0) || (e.status === 400 && e.violations)) body.errors = e.violations;
  return body;
}

export function badParam(field: string, description: string): ProblemError {
  return new ProblemError(400, 'invalid request', [{ field, description }]);
}

/* Codes only a service's handler sends: their text was written for the client. */
const FROM_HANDLER = new Set<number>([
  GrpcStatus.INVALID_ARGUMENT,
  GrpcStatus.NOT_FOUND,
  GrpcStatus.ALREADY_EXISTS,
  GrpcStatus.FAILED_PRECONDITION,
  GrpcStatus.ABORTED,
  GrpcStatus.OUT_OF_RANGE,
  GrpcStatus.DATA_LOSS,
  GrpcStatus.PERMISSION_DENIED,
  GrpcStatus.UNAUTHENTICATED,
]);

function httpStatus(code: number, preconditionStatus: number): number {
  switch (code) {
    case GrpcStatus.INVALID_ARGUMENT:
    case GrpcStatus.OUT_OF_RANGE:
      return 400;
    case GrpcStatus.UNAUTHENTICATED:
      return 401;
    case GrpcStatus.PERMISSION_DENIED:
      return 403;
    case GrpcStatus.NOT_FOUND:
      return 404;
    case GrpcStatus.ALREADY_EXISTS:
    case GrpcStatus.ABORTED:
      return 409;
    case GrpcStatus.FAILED_PRECONDITION:
      return preconditionStatus === 422 ? 422 : 409;
    case GrpcStatus.RESOURCE_EXHAUSTED:
      return 429;
    case GrpcStatus.UNAVAILABLE:
      return 503;
    case GrpcStatus.DEADLINE_EXCEEDED:
      return 504;
    default:
      return 500;
  }
}

export interface UpstreamFailure {
  code: number;
  details: string;
  violations: FieldViolation[];
}

/* A failed call as the client's problem (problem_from_err): the service's words
 * for handler codes, a fixed sentence for the rest; renames map proto field names
 * to the API's ("idempotency_key" -> "Idempotency-Key"). */
export function problemFromUpstream(f: UpstreamFailure, preconditionStatus: number, renames: Record<string, string> = {}): ProblemError {
  let code = f.code;
  if (!FROM_HANDLER.has(code)) {
    if (code === GrpcStatus.UNAVAILABLE || code === GrpcStatus.RESOURCE_EXHAUSTED || code === GrpcStatus.ABORTED)
      code = GrpcStatus.UNAVAILABLE;
    else if (code !== GrpcStatus.DEADLINE_EXCEEDED) code = GrpcStatus.INTERNAL;
    const status = httpStatus(code, preconditionStatus);
    const detail =
      status === 503
        ? 'a service is unavailable, retry later'
        : status === 504
          ? 'a service did not answer in time, retry later'
          : 'internal error; quote the request id when reporting it';
    return new ProblemError(status, detail);
  }
  const reused = code === GrpcStatus.ALREADY_EXISTS && f.violations.some((v) => v.field === 'idempotency_key');
  const status = reused ? 422 : httpStatus(code, preconditionStatus);
  const violations = f.violations.map((v) => ({ field: renames[v.field] ?? v.field, description: v.description }));
  const detail = f.details || `${code}`;
  return new ProblemError(status, detail, violations.length > 0 || status === 400 ? violations : undefined, {}, reused);
}
