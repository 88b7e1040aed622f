/* The NestJS peer of the shop fleet gateway (bench only, issue 17): NestJS on
 * the Fastify adapter, production settings (no request logging, Fastify's
 * logger off), one module, SIGTERM drains and exits 0. */
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { APP_FILTER, APP_GUARD, NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import { X509Certificate } from 'node:crypto';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AuthService } from './auth.js';
import { Config, loadConfig } from './config.js';
import { ProblemFilter, sendProblem, toProblem } from './filter.js';
import { GatewayController, REPO_ROOT } from './gateway.controller.js';
import { AuthGuard } from './guard.js';
import { initRequest } from './http.js';
import { ProtoRegistry } from './proto.js';
import { Upstreams } from './upstream.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = process.env.SHOP_REPO_ROOT ?? path.resolve(here, '..', '..', '..', '..');

async function bootstrap(): Promise<void> {
  let cfg: Config;
  try {
    cfg = loadConfig();
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    process.exit(2);
  }
  const protos = new ProtoRegistry(root);

  @Module({
    controllers: [GatewayController],
    providers: [
      { provide: Config, useValue: cfg },
      { provide: ProtoRegistry, useValue: protos },
      { provide: REPO_ROOT, useValue: root },
      Upstreams,
      AuthService,
      { provide: APP_GUARD, useClass: AuthGuard },
      { provide: APP_FILTER, useClass: ProblemFilter },
    ],
  })
  class AppModule {}

  const adapter = new FastifyAdapter({ logger: false, bodyLimit: cfg.bodyLimit, keepAliveTimeout: 30000, trustProxy: false });
  const fastify = adapter.getInstance();
  fastify.removeAllContentTypeParsers();
  fastify.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: cfg.bodyLimit }, (_req, body, done) => done(null, body));
  fastify.addHook('onRequest', (req, _reply, done) => {
    initRequest(req);
    done();
  });
  fastify.addHook('onSend', (req, reply, payload, done) => {
    reply.header('X-Request-Id', req.gw.requestId);
    if (!reply.hasHeader('Cache-Control')) reply.header('Cache-Control', 'no-store');
    reply.header('X-Content-Type-Options', 'nosniff');
    done(null, payload);
  });
  /* Failures before routing (body too large, bad framing) as problems too. */
  fastify.setErrorHandler((err, req, reply) => sendProblem(req, reply, toProblem(err, req)));

  const app = await NestFactory.create<NestFastifyApplication>(AppModule, adapter, { logger: ['error', 'warn'], bodyParser: false });
  await app.listen(cfg.port, cfg.host);
  /* One line on how this process speaks to the fleet (issue 20), as the C gateway logs it. */
  const identity = cfg.grpcTls ? (/(?:^|\n)CN=([^\n]*)/.exec(new X509Certificate(cfg.grpcTls.cert).subject)?.[1] ?? '') : '';
  if (!cfg.grpcTls) process.stderr.write(`${JSON.stringify({ level: 'warn', msg: 'GRPC_PLAINTEXT=true: gRPC to the services without TLS' })}\n`);
  process.stderr.write(
    `${JSON.stringify({ level: 'info', msg: 'security', grpc: cfg.grpcTls ? 'mtls' : 'plaintext', identity, redis_user: cfg.redisUsername || 'default', redis_auth: cfg.redisPassword !== '' })}\n`,
  );
  /* SIGTERM/SIGINT: stop accepting, finish what is in flight, exit 0 (as the C
   * gateway does after a clean drain). */
  let closing = false;
  const drain = (): void => {
    if (closing) return;
    closing = true;
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', drain);
  process.on('SIGINT', drain);
}

void bootstrap();
