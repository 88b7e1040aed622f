/* Authentication as a Nest guard: none, optional (a token, when sent, must be
 * valid), user, admin; the budget's RateLimit headers on every counted request. */
import { CanActivate, ExecutionContext, Injectable, SetMetadata } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AuthService, rateLimitHeaders } from './auth.js';
import { ProblemError } from './problem.js';
import { setHeaders } from './http.js';

export type AuthNeed = 'none' | 'optional' | 'user' | 'admin';
export const AUTH_KEY = 'gw-auth';
export const Auth = (need: AuthNeed) => SetMetadata(AUTH_KEY, need);

@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly auth: AuthService,
  ) {}

  async canActivate(ctx: ExecutionContext): Promise<boolean> {
    const need = this.reflector.get<AuthNeed>(AUTH_KEY, ctx.getHandler()) ?? 'none';
    const http = ctx.switchToHttp();
    const req = http.getRequest<FastifyRequest>();
    const reply = http.getResponse<FastifyReply>();
    const authorization = req.headers.authorization;
    if (need === 'none' || (need === 'optional' && authorization === undefined)) return true;
    if (!authorization || authorization.slice(0, 7).toLowerCase() !== 'bearer ')
      throw new ProblemError(401, 'a bearer token is required', undefined, { 'WWW-Authenticate': 'Bearer' });
    const claims = await this.auth.verify(authorization.slice(7));
    const budget = await this.auth.sessionBudget(claims);
    req.gw.claims = claims;
    const h = rateLimitHeaders(budget);
    if (budget.refused) throw new ProblemError(429, 'request budget exceeded, retry later', undefined, h);
    setHeaders(reply, h);
    if (need === 'admin' && claims.role !== 'admin') throw new ProblemError(403, 'this operation needs the admin role');
    return true;
  }
}
