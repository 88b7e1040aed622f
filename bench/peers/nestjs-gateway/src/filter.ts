/* Every failure as problem+json (gateway/src/problem.c), with the router's 404
 * and 405 (Allow) and the body limit's 413. */
import { ArgumentsHost, Catch, ExceptionFilter, HttpException } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { initRequest, setHeaders } from './http.js';
import { ProblemError, problemBody, problemFromUpstream } from './problem.js';
import { UpstreamError } from './upstream.js';

/* The API's paths and methods, for Allow on a 405. */
const ROUTES: [RegExp, string[]][] = [
  [/^\/api\/v1\/auth\/(register|login|refresh|logout)$/, ['POST']],
  [/^\/api\/v1\/users\/me$/, ['GET', 'PATCH']],
  [/^\/api\/v1\/users\/me\/preferences$/, ['GET', 'PUT']],
  [/^\/api\/v1\/users\/me\/wallet$/, ['GET']],
  [/^\/api\/v1\/users\/me\/wallet\/deposits$/, ['POST']],
  [/^\/api\/v1\/products$/, ['GET', 'POST']],
  [/^\/api\/v1\/products\/[^/]+$/, ['GET', 'PATCH', 'DELETE']],
  [/^\/api\/v1\/products\/[^/]+\/stock$/, ['PUT']],
  [/^\/api\/v1\/orders$/, ['POST', 'GET']],
  [/^\/api\/v1\/orders\/[^/]+$/, ['GET']],
  [/^\/api\/v1\/orders\/[^/]+\/cancel$/, ['POST']],
  [/^\/(healthz|readyz)$/, ['GET']],
  [/^\/api\/v1\/openapi\.json$/, ['GET']],
];

export function sendProblem(req: FastifyRequest, reply: FastifyReply, e: ProblemError): void {
  if (!req.gw) initRequest(req);
  setHeaders(reply, e.headers);
  reply.header('Cache-Control', 'no-store');
  reply.status(e.status).type('application/problem+json').send(JSON.stringify(problemBody(e, req.gw.requestId)));
}

@Catch()
export class ProblemFilter implements ExceptionFilter {
  catch(exception: unknown, host: ArgumentsHost): void {
    const req = host.switchToHttp().getRequest<FastifyRequest>();
    const reply = host.switchToHttp().getResponse<FastifyReply>();
    sendProblem(req, reply, toProblem(exception, req));
  }
}

export function toProblem(exception: unknown, req: FastifyRequest): ProblemError {
  if (exception instanceof ProblemError) return exception;
  if (exception instanceof UpstreamError) return problemFromUpstream(exception, 409);
  const code = (exception as { code?: string }).code;
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new ProblemError(413, 'the request body is too large');
  if (exception instanceof HttpException && exception.getStatus() === 404) {
    const path = req.url.split('?')[0];
    const route = ROUTES.find(([re]) => re.test(path));
    if (route) {
      const allow = route[1].includes('GET') ? [...route[1], 'HEAD'] : route[1];
      return new ProblemError(405, 'method not allowed here', undefined, { Allow: allow.join(', ') });
    }
    return new ProblemError(404, 'no such resource');
  }
  if (exception instanceof HttpException && exception.getStatus() < 500)
    return new ProblemError(exception.getStatus(), exception.message);
  process.stderr.write(
    JSON.stringify({ level: 'error', msg: 'request failed', request_id: req.gw?.requestId, error: String((exception as Error)?.stack ?? exception) }) + '\n',
  );
  return new ProblemError(500, 'internal error; quote the request id when reporting it');
}
