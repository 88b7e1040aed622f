/* One long-lived gRPC channel per upstream (keep-alive on), calls with the C
 * gateway's metadata (x-request-id, traceparent, x-user-id, x-user-role) and
 * deadline, failures with the field violations of grpc-status-details-bin. */
import { Injectable, OnModuleDestroy } from '@nestjs/common';
import * as grpc from '@grpc/grpc-js';
import { Config } from './config.js';
import { ProtoRegistry } from './proto.js';
import { FieldViolation, UpstreamFailure } from './problem.js';

export type UpstreamName = 'order' | 'product' | 'user';

const SERVICES: Record<UpstreamName, string> = {
  order: 'shop.order.v1.OrderService',
  product: 'shop.product.v1.ProductService',
  user: 'shop.user.v1.UserService',
};

export interface CallContext {
  requestId: string;
  traceparent: string;
  userId?: string;
  role?: string;
}

type Unary = (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: Record<string, unknown>) => void) => void;

export class UpstreamError extends Error implements UpstreamFailure {
  constructor(
    readonly code: number,
    readonly details: string,
    readonly violations: FieldViolation[],
  ) {
    super(details);
  }
}

/* gRPC's rich error in grpc-status-details-bin: google.rpc.Status { int32 code = 1;
 * string message = 2; repeated google.protobuf.Any details = 3 }, Any { string
 * type_url = 1; bytes value = 2 }, google.rpc.BadRequest { repeated FieldViolation
 * field_violations = 1 }, FieldViolation { string field = 1; string description = 2 }:
 * small enough to read from the wire format directly. */
const BAD_REQUEST_TYPE_URL = 'type.googleapis.com/google.rpc.BadRequest';

function readVarint(b: Buffer, pos: { i: number }): number {
  let v = 0;
  let shift = 0;
  for (;;) {
    const c = b[pos.i++];
    v += (c & 0x7f) * 2 ** shift;
    if (c < 0x80 || pos.i >= b.length) return v;
    shift += 7;
  }
}

/* The length-delimited fields of b; varints are skipped, other wire types end it. */
function fields(b: Buffer): [number, Buffer][] {
  const out: [number, Buffer][] = [];
  const pos = { i: 0 };
  while (pos.i < b.length) {
    const tag = readVarint(b, pos);
    if ((tag & 7) === 0) {
      readVarint(b, pos);
      continue;
    }
    if ((tag & 7) !== 2) return out;
    const n = readVarint(b, pos);
    out.push([tag >>> 3, b.subarray(pos.i, pos.i + n)]);
    pos.i += n;
  }
  return out;
}

function parseBadRequest(b: Buffer): FieldViolation[] {
  return fields(b)
    .filter(([n]) => n === 1)
    .map(([, fv]) => {
      const v: FieldViolation = { field: '', description: '' };
      for (const [n, s] of fields(fv)) {
        if (n === 1) v.field = s.toString('utf8');
        else if (n === 2) v.description = s.toString('utf8');
      }
      return v;
    });
}

/* The field violations of every BadRequest among a serialized Status's details. */
export function parseStatusDetails(b: Buffer): FieldViolation[] {
  return fields(b)
    .filter(([n]) => n === 3)
    .flatMap(([, any]) => {
      const f = fields(any);
      const typeUrl = f.find(([n]) => n === 1)?.[1].toString('utf8');
      const value = f.find(([n]) => n === 2)?.[1];
      return typeUrl === BAD_REQUEST_TYPE_URL && value ? parseBadRequest(value) : [];
    });
}

@Injectable()
export class Upstreams implements OnModuleDestroy {
  private readonly clients = new Map<UpstreamName, grpc.Client>();
  private readonly health = new Map<UpstreamName, grpc.Client>();

  constructor(
    private readonly cfg: Config,
    protos: ProtoRegistry,
  ) {
    const obj = grpc.loadPackageDefinition(protos.pkg) as unknown as Record<string, unknown>;
    const lookup = (name: string): grpc.ServiceClientConstructor =>
      name.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], obj) as grpc.ServiceClientConstructor;
    const options: grpc.ChannelOptions = {
      'grpc.keepalive_time_ms': 30000,
      'grpc.keepalive_timeout_ms': 10000,
      'grpc.keepalive_permit_without_calls': 1,
    };
    /* Mutual TLS (issue 20): the services are verified against the fleet CA (the
     * target's host, 127.0.0.1 or a name, against their certificates' SANs) and the
     * gateway presents its own certificate, whose CN the services check before
     * they take x-user-*. GRPC_PLAINTEXT=true: insecure, as before. */
    const tls = cfg.grpcTls;
    const creds = tls ? grpc.credentials.createSsl(tls.ca, tls.key, tls.cert) : grpc.credentials.createInsecure();
    for (const [up, svc] of Object.entries(SERVICES) as [UpstreamName, string][]) {
      const Ctor = lookup(svc);
      const client = new Ctor(this.target(cfg.upstream[up]), creds, options);
      this.clients.set(up, client);
      const Health = lookup('grpc.health.v1.Health');
      this.health.set(up, new Health(this.target(cfg.upstream[up]), creds, { ...options, channelOverride: client.getChannel() as grpc.Channel }));
    }
  }

  private target(addr: string): string {
    return addr.includes(',') ? `ipv4:${addr}` : addr;
  }

  call(up: UpstreamName, method: string, req: unknown, ctx: CallContext): Promise<Record<string, unknown>> {
    const client = this.clients.get(up) as unknown as Record<string, Unary>;
    const md = new grpc.Metadata();
    md.set('x-request-id', ctx.requestId);
    md.set('traceparent', ctx.traceparent);
    if (ctx.userId) {
      md.set('x-user-id', ctx.userId);
      md.set('x-user-role', ctx.role ?? '');
    }
    const deadline = Date.now() + this.cfg.upstreamTimeoutMs;
    return new Promise((resolve, reject) => {
      client[method].call(client, req, md, { deadline }, (err, res) => {
        if (err) {
          const raw = err.metadata?.get('grpc-status-details-bin')[0];
          const violations = Buffer.isBuffer(raw) ? parseStatusDetails(raw) : [];
          reject(new UpstreamError(err.code, err.details, violations));
        } else resolve(res ?? {});
      });
    });
  }

  /* grpc.health.v1 Check with a short deadline: "ok" or why not. */
  check(up: UpstreamName): Promise<string> {
    const client = this.health.get(up) as unknown as Record<string, Unary>;
    return new Promise((resolve) => {
      client.Check.call(client, {}, new grpc.Metadata(), { deadline: Date.now() + 500 }, (err, res) => {
        if (err) resolve(grpc.status[err.code]?.toLowerCase() ?? 'unavailable');
        else resolve(res?.status === 'SERVING' ? 'ok' : 'not serving');
      });
    });
  }

  onModuleDestroy(): void {
    for (const c of this.clients.values()) c.close();
  }
}
