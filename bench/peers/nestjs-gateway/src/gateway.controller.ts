/* The REST API (gateway/src/routes*.c), route by route. */
import { Controller, Delete, Get, HttpCode, Inject, Param, Patch, Post, Put, Req, Res } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { AuthService, rateLimitHeaders } from './auth.js';
import { Config } from './config.js';
import { Auth } from './guard.js';
import { bodyMessage, header, idempotencyKey, isUuid, listParams, pathId, queryOnly, setHeaders } from './http.js';
import { badParam, ProblemError, problemFromUpstream } from './problem.js';
import { JsonObject, ProtoRegistry } from './proto.js';
import { Upstreams, UpstreamError, UpstreamName } from './upstream.js';

const PRODUCT_NOT_FOUND = 'product not found';
const ORDER_NOT_FOUND = 'order not found';
const IDEM_RENAMES = { idempotency_key: 'Idempotency-Key' };
const PRODUCT_RENAMES = { product_id: 'id' };
const U = 'shop.user.v1.';
const P = 'shop.product.v1.';
const O = 'shop.order.v1.';
type Msg = Record<string, unknown>;

export const REPO_ROOT = Symbol('REPO_ROOT');

@Controller()
export class GatewayController {
  private readonly openapi: string;

  constructor(
    private readonly cfg: Config,
    private readonly protos: ProtoRegistry,
    private readonly up: Upstreams,
    private readonly auth: AuthService,
    @Inject(REPO_ROOT) root: string,
  ) {
    this.openapi = readFileSync(path.join(root, 'gateway', 'openapi.json'), 'utf8');
  }

  private async call(req: FastifyRequest, up: UpstreamName, method: string, msg: unknown, precondition = 409, renames: Record<string, string> = {}): Promise<Msg> {
    const c = req.gw.claims;
    try {
      return await this.up.call(up, method, msg, { requestId: req.gw.requestId, traceparent: req.gw.traceparent, userId: c?.sub, role: c?.role });
    } catch (e) {
      if (e instanceof UpstreamError) throw problemFromUpstream(e, precondition, renames);
      throw e;
    }
  }

  private json(type: string, m: unknown): JsonObject {
    return this.protos.toJson(type, (m ?? null) as Msg | null);
  }

  /* ------------------------------------------------------------- auth ---- */

  private async limits(req: FastifyRequest, reply: FastifyReply, kind: string, email: unknown, ipLimit: number, accountLimit: number): Promise<void> {
    const subjects: [string, string, number][] = [
      [`${kind}-ip`, req.ip, ipLimit],
      [`${kind}-account`, this.auth.emailHash(typeof email === 'string' ? email : ''), accountLimit],
    ];
    for (const [name, subject, limit] of subjects) {
      const b = await this.auth.hit(name, subject, limit, this.cfg.authWindowMs);
      if (!b) continue;
      const h = rateLimitHeaders(b);
      if (b.refused) throw new ProblemError(429, 'too many attempts, retry later', undefined, h);
      setHeaders(reply, h);
    }
  }

  @Post('/api/v1/auth/register')
  @Auth('none')
  @HttpCode(201)
  async register(@Req() req: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply) {
    const [msg] = bodyMessage(this.protos, req, U + 'CreateUserRequest', []);
    await this.limits(req, reply, 'register', msg.email, this.cfg.registerIpLimit, this.cfg.registerAccountLimit);
    const res = await this.call(req, 'user', 'CreateUser', msg);
    reply.header('Location', '/api/v1/users/me');
    return this.json(U + 'User', res.user);
  }

  @Post('/api/v1/auth/login')
  @Auth('none')
  @HttpCode(200)
  async login(@Req() req: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply) {
    const [msg] = bodyMessage(this.protos, req, U + 'VerifyCredentialsRequest', []);
    await this.limits(req, reply, 'login', msg.email, this.cfg.loginIpLimit, this.cfg.loginAccountLimit);
    let res: Msg;
    try {
      res = await this.up.call('user', 'VerifyCredentials', msg, { requestId: req.gw.requestId, traceparent: req.gw.traceparent });
    } catch (e) {
      if (e instanceof UpstreamError && (e.code === 16 || e.code === 5)) throw new ProblemError(401, 'invalid email or password');
      if (e instanceof UpstreamError) throw problemFromUpstream(e, 409);
      throw e;
    }
    const user = res.user as Msg | undefined;
    const role = user ? this.json(U + 'User', user).role : null;
    if (!user || typeof role !== 'string') throw new ProblemError(500, 'internal error; quote the request id when reporting it');
    return this.auth.issue(await this.auth.createSession(String(user.id), role));
  }

  @Post('/api/v1/auth/refresh')
  @Auth('none')
  @HttpCode(200)
  async refresh(@Req() req: FastifyRequest) {
    const [msg] = bodyMessage(this.protos, req, 'shop.gateway.v1.RefreshRequest', []);
    const g = await this.auth.refresh(String(msg.refresh_token ?? ''));
    if (!g) throw new ProblemError(401, 'the refresh token is invalid, used or expired');
    return this.auth.issue(g);
  }

  @Post('/api/v1/auth/logout')
  @Auth('user')
  async logout(@Req() req: FastifyRequest, @Res() reply: FastifyReply) {
    bodyMessage(this.protos, req, 'shop.gateway.v1.Empty', [], false);
    await this.auth.deleteSession(req.gw.claims!.sid);
    reply.status(204).send();
  }

  /* ------------------------------------------------------------ users ---- */

  @Get('/api/v1/users/me')
  @Auth('user')
  async me(@Req() req: FastifyRequest) {
    queryOnly(req, []);
    return this.json(U + 'GetUserResponse', await this.call(req, 'user', 'GetUser', { user_id: req.gw.claims!.sub }));
  }

  @Patch('/api/v1/users/me')
  @Auth('user')
  async patchMe(@Req() req: FastifyRequest) {
    const [msg, obj] = bodyMessage(this.protos, req, U + 'UpdateProfileRequest', ['user_id', 'update_mask']);
    const mask = Object.keys(obj);
    if (mask.length === 0) throw new ProblemError(400, 'the body must name at least one field to change');
    const res = await this.call(req, 'user', 'UpdateProfile', { ...msg, user_id: req.gw.claims!.sub, update_mask: mask });
    return this.json(U + 'UpdateProfileResponse', res);
  }

  @Get('/api/v1/users/me/preferences')
  @Auth('user')
  async preferences(@Req() req: FastifyRequest) {
    queryOnly(req, []);
    const res = await this.call(req, 'user', 'GetPreferences', { user_id: req.gw.claims!.sub });
    return this.json(U + 'Preferences', res.preferences);
  }

  @Put('/api/v1/users/me/preferences')
  @Auth('user')
  async putPreferences(@Req() req: FastifyRequest) {
    const all = ['language', 'currency', 'marketing_opt_in'];
    const [msg, obj] = bodyMessage(this.protos, req, U + 'UpdatePreferencesRequest', ['user_id', 'update_mask']);
    const missing = all.filter((f) => !(f in obj)).map((field) => ({ field, description: 'required' }));
    if (missing.length > 0) throw new ProblemError(400, 'invalid request', missing);
    const res = await this.call(req, 'user', 'UpdatePreferences', { ...msg, user_id: req.gw.claims!.sub, update_mask: all });
    return this.json(U + 'Preferences', res.preferences);
  }

  @Get('/api/v1/users/me/wallet')
  @Auth('user')
  async wallet(@Req() req: FastifyRequest) {
    const q = queryOnly(req, ['limit', 'page_token']);
    const res = await this.call(req, 'user', 'GetWallet', { ...listParams(q), user_id: req.gw.claims!.sub });
    return this.json(U + 'GetWalletResponse', res);
  }

  @Post('/api/v1/users/me/wallet/deposits')
  @Auth('user')
  @HttpCode(201)
  async deposit(@Req() req: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply) {
    const key = idempotencyKey(req);
    const [msg] = bodyMessage(this.protos, req, U + 'DepositRequest', ['user_id', 'idempotency_key']);
    const res = await this.call(req, 'user', 'Deposit', { ...msg, user_id: req.gw.claims!.sub, idempotency_key: key }, 409, IDEM_RENAMES);
    if (res.replayed) reply.header('Idempotent-Replayed', 'true');
    return this.json(U + 'DepositResponse', res);
  }

  /* --------------------------------------------------------- products ---- */

  private cacheHeaders(req: FastifyRequest, reply: FastifyReply): void {
    reply.header('Cache-Control', req.gw.claims ? 'private, no-cache' : 'public, max-age=30');
    reply.header('Vary', 'Authorization');
  }

  private etag(p: unknown): string | undefined {
    const at = (p as Msg | undefined)?.updated_at;
    if (typeof at !== 'string') return undefined;
    const m = /^(.*?)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(at);
    if (!m) return undefined;
    const ms = Date.parse(m[1] + m[3]);
    if (Number.isNaN(ms)) return undefined;
    const frac = (m[2] ?? '').padEnd(6, '0').slice(0, 6);
    return `"${BigInt(ms) * 1000n + BigInt(frac)}"`;
  }

  @Get('/api/v1/products')
  @Auth('optional')
  async listProducts(@Req() req: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply) {
    const query = queryOnly(req, ['q', 'limit', 'page_token', 'include_inactive']);
    const lp = listParams(query);
    const q = query.q ?? '';
    if (q.length > 200) throw badParam('query.q', 'at most 200 characters');
    const inactive = query.include_inactive;
    if (inactive !== undefined && inactive !== 'true' && inactive !== 'false') throw badParam('query.include_inactive', 'must be true or false');
    const res = await this.call(req, 'product', 'ListProducts', { ...lp, q, include_inactive: inactive === 'true' }, 409, PRODUCT_RENAMES);
    this.cacheHeaders(req, reply);
    return this.json(P + 'ListProductsResponse', res);
  }

  @Get('/api/v1/products/:id')
  @Auth('optional')
  async getProduct(@Req() req: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply, @Param('id') rawId: string) {
    const id = pathId(rawId, PRODUCT_NOT_FOUND);
    queryOnly(req, []);
    const res = await this.call(req, 'product', 'GetProduct', { product_id: id }, 409, PRODUCT_RENAMES);
    const etag = this.etag(res.product);
    this.cacheHeaders(req, reply);
    if (etag) {
      reply.header('ETag', etag);
      const inm = header(req, 'if-none-match');
      if (inm !== undefined && (inm.trim() === '*' || (inm.match(/(?:W\/)?"[^"]*"/g) ?? []).some((t) => t.replace(/^W\//, '') === etag))) {
        reply.status(304);
        return '';
      }
    }
    return this.json(P + 'Product', res.product);
  }

  private ifMatch(req: FastifyRequest): string {
    const h = header(req, 'if-match');
    if (h === undefined || h.trim() === '*') return '';
    for (const t of h.match(/(?:W\/)?"[^"]*"/g) ?? []) {
      if (t.startsWith('W/') || t.length < 3 || t.length > 20 || !/^"[0-9]+"$/.test(t)) continue;
      const us = BigInt(t.slice(1, -1));
      if (us <= 0n) continue;
      return microsToRfc3339(us);
    }
    return microsToRfc3339(0n);
  }

  private async productWrite(req: FastifyRequest, reply: FastifyReply, method: string, msg: Msg) {
    let res: Msg;
    try {
      res = await this.up.call('product', method, msg, { requestId: req.gw.requestId, traceparent: req.gw.traceparent, userId: req.gw.claims?.sub, role: req.gw.claims?.role });
    } catch (e) {
      if (e instanceof UpstreamError && e.code === 9 && header(req, 'if-match') !== undefined)
        throw new ProblemError(412, 'the product has changed since the ETag in If-Match');
      if (e instanceof UpstreamError) throw problemFromUpstream(e, 409, PRODUCT_RENAMES);
      throw e;
    }
    const etag = this.etag(res.product);
    if (etag) reply.header('ETag', etag);
    return this.json(P + 'Product', res.product);
  }

  @Post('/api/v1/products')
  @Auth('admin')
  @HttpCode(201)
  async createProduct(@Req() req: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply) {
    const [msg] = bodyMessage(this.protos, req, P + 'CreateProductRequest', []);
    const res = await this.call(req, 'product', 'CreateProduct', msg);
    const p = res.product as Msg | undefined;
    if (p) reply.header('Location', `/api/v1/products/${String(p.id)}`);
    const etag = this.etag(p);
    if (etag) reply.header('ETag', etag);
    return this.json(P + 'Product', p);
  }

  @Patch('/api/v1/products/:id')
  @Auth('admin')
  async patchProduct(@Req() req: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply, @Param('id') rawId: string) {
    const id = pathId(rawId, PRODUCT_NOT_FOUND);
    const [msg, obj] = bodyMessage(this.protos, req, P + 'UpdateProductRequest', ['product_id', 'update_mask', 'expected_updated_at']);
    const mask = Object.keys(obj);
    if (mask.length === 0) throw new ProblemError(400, 'the body must name at least one field to change');
    return this.productWrite(req, reply, 'UpdateProduct', { ...msg, product_id: id, update_mask: mask, expected_updated_at: this.ifMatch(req) });
  }

  @Delete('/api/v1/products/:id')
  @Auth('admin')
  async archiveProduct(@Req() req: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply, @Param('id') rawId: string) {
    const id = pathId(rawId, PRODUCT_NOT_FOUND);
    return this.productWrite(req, reply, 'ArchiveProduct', { product_id: id, expected_updated_at: this.ifMatch(req) });
  }

  @Put('/api/v1/products/:id/stock')
  @Auth('admin')
  async putStock(@Req() req: FastifyRequest, @Param('id') rawId: string) {
    const id = pathId(rawId, PRODUCT_NOT_FOUND);
    const [msg, obj] = bodyMessage(this.protos, req, P + 'SetStockRequest', ['product_id']);
    if (!('available' in obj)) throw badParam('available', 'required');
    const res = await this.call(req, 'product', 'SetStock', { ...msg, product_id: id }, 409, PRODUCT_RENAMES);
    return this.json(P + 'Stock', res.stock);
  }

  /* ----------------------------------------------------------- orders ---- */

  @Post('/api/v1/orders')
  @Auth('user')
  @HttpCode(202)
  async createOrder(@Req() req: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply) {
    const key = idempotencyKey(req);
    const [msg] = bodyMessage(this.protos, req, O + 'CreateOrderRequest', ['user_id', 'idempotency_key']);
    const res = await this.call(req, 'order', 'CreateOrder', { ...msg, user_id: req.gw.claims!.sub, idempotency_key: key }, 422, IDEM_RENAMES);
    const order = res.order as Msg | undefined;
    if (order) reply.header('Location', `/api/v1/orders/${String(order.id)}`);
    if (res.replayed) reply.header('Idempotent-Replayed', 'true');
    return this.json(O + 'Order', order);
  }

  @Get('/api/v1/orders')
  @Auth('user')
  async listOrders(@Req() req: FastifyRequest) {
    const q = queryOnly(req, ['limit', 'page_token', 'user_id']);
    const lp = listParams(q);
    const c = req.gw.claims!;
    const admin = c.role === 'admin';
    if (q.user_id !== undefined && !admin && q.user_id !== c.sub) throw new ProblemError(403, "only admins list other users' orders");
    if (q.user_id !== undefined && !isUuid(q.user_id)) throw badParam('query.user_id', 'must be a UUID');
    const res = await this.call(req, 'order', 'ListOrders', { ...lp, user_id: q.user_id ?? (admin ? '' : c.sub) });
    return this.json(O + 'ListOrdersResponse', res);
  }

  @Get('/api/v1/orders/:id')
  @Auth('user')
  async getOrder(@Req() req: FastifyRequest, @Param('id') rawId: string) {
    const id = pathId(rawId, ORDER_NOT_FOUND);
    queryOnly(req, []);
    const res = await this.call(req, 'order', 'GetOrder', { order_id: id });
    return this.json(O + 'Order', res.order);
  }

  @Post('/api/v1/orders/:id/cancel')
  @Auth('user')
  @HttpCode(200)
  async cancelOrder(@Req() req: FastifyRequest, @Param('id') rawId: string) {
    const id = pathId(rawId, ORDER_NOT_FOUND);
    bodyMessage(this.protos, req, 'shop.gateway.v1.Empty', [], false);
    const res = await this.call(req, 'order', 'CancelOrder', { order_id: id });
    return this.json(O + 'Order', res.order);
  }

  /* -------------------------------------------------------------- ops ---- */

  @Get('/healthz')
  @Auth('none')
  healthz() {
    return { status: 'ok' };
  }

  @Get('/readyz')
  @Auth('none')
  async readyz(@Res({ passthrough: true }) reply: FastifyReply) {
    let redis = 'ok';
    try {
      await this.auth.redis.ping();
    } catch {
      redis = 'unavailable';
    }
    const checks: Record<string, string> = { redis };
    for (const up of ['user', 'product', 'order'] as UpstreamName[]) checks[up] = await this.up.check(up);
    const ready = Object.values(checks).every((v) => v === 'ok');
    reply.status(ready ? 200 : 503);
    return { status: ready ? 'ready' : 'not ready', checks };
  }

  @Get('/api/v1/openapi.json')
  @Auth('none')
  openapiDoc(@Res({ passthrough: true }) reply: FastifyReply) {
    reply.header('Cache-Control', 'public, max-age=3600');
    reply.type('application/json');
    return this.openapi;
  }
}

function microsToRfc3339(us: bigint): string {
  const ms = Number(us / 1000n);
  const frac = (us % 1000000n).toString().padStart(6, '0');
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, `.${frac}Z`);
}
