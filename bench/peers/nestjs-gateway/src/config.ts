import { readFileSync } from 'node:fs';

/* The C gateway's settings (gateway/src/main.c), read once from the same
 * environment variables with the same defaults. Only those this peer uses. */

export abstract class Config {
  abstract addr: string;
  abstract host: string;
  abstract port: number;
  /* REDIS_URL without its user information; the ACL user and password apart. */
  abstract redisUrl: string;
  abstract redisUsername: string;
  abstract redisPassword: string;
  abstract redisPrefix: string;
  abstract upstream: { order: string; product: string; user: string };
  abstract jwtAlg: 'HS256' | 'ES256';
  abstract jwtSecret: string;
  abstract jwtPrivateKeyFile: string;
  abstract jwtPublicKeyFile: string;
  abstract jwtIssuer: string;
  abstract jwtAudience: string;
  abstract accessTtlS: number;
  abstract refreshTtlMs: number;
  abstract upstreamTimeoutMs: number;
  abstract bodyLimit: number;
  abstract loginIpLimit: number;
  abstract loginAccountLimit: number;
  abstract registerIpLimit: number;
  abstract registerAccountLimit: number;
  abstract authWindowMs: number;
  abstract userRequestLimit: number;
  abstract userWindowMs: number;
  /* gRPC to the services: mutual TLS with this process's identity (the gateway's
   * certificate, CN=gateway), or null with GRPC_PLAINTEXT=true (issue 20). */
  abstract grpcTls: { ca: Buffer; cert: Buffer; key: Buffer; caFile: string; certFile: string } | null;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60000, h: 3600000 };

function duration(name: string, def: string): number {
  const v = process.env[name] || def;
  const m = /^(\d+)(ms|s|m|h)$/.exec(v);
  if (!m) throw new Error(`${name}: not a duration: ${v}`);
  return Number(m[1]) * UNITS[m[2]];
}

function int(name: string, def: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`${name}: not an integer: ${v}`);
  return n;
}

function str(name: string, def: string): string {
  const v = process.env[name];
  return v === undefined || v === '' ? def : v;
}

/* A secret setting: NAME, or the file NAME_FILE names (one trailing newline
 * dropped), never both: the C programs' rule (common/src/config.c). */
function secret(name: string, def: string): string {
  const file = process.env[`${name}_FILE`];
  if (file === undefined || file === '') return str(name, def);
  if (process.env[name]) throw new Error(`${name} and ${name}_FILE are both set: give one`);
  const v = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  if (v === '') throw new Error(`${name}_FILE: ${file} is empty`);
  return v;
}

function bool(name: string): boolean {
  const v = str(name, 'false').toLowerCase();
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new Error(`${name}: must be true, false, 1 or 0, got "${v}"`);
}

/* gRPC mutual TLS from TLS_CA_FILE, TLS_CERT_FILE and TLS_KEY_FILE, as the C
 * programs read them; GRPC_PLAINTEXT=true is the only way to run without. */
function grpcTls(): Config['grpcTls'] {
  if (bool('GRPC_PLAINTEXT')) return null;
  const [caFile, certFile, keyFile] = ['TLS_CA_FILE', 'TLS_CERT_FILE', 'TLS_KEY_FILE'].map((n) => str(n, ''));
  if (!caFile || !certFile || !keyFile)
    throw new Error(
      'gRPC is mutual TLS by default: set TLS_CA_FILE, TLS_CERT_FILE and TLS_KEY_FILE ' +
        "(this process's identity), or GRPC_PLAINTEXT=true to opt out",
    );
  const read = (name: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (e) {
      throw new Error(`${name}: cannot read ${file}: ${(e as Error).message}`);
    }
  };
  return {
    ca: read('TLS_CA_FILE', caFile),
    cert: read('TLS_CERT_FILE', certFile),
    key: read('TLS_KEY_FILE', keyFile),
    caFile,
    certFile,
  };
}

/* REDIS_URL's user (redis://gateway@host:port) and REDIS_PASSWORD or
 * REDIS_PASSWORD_FILE (a password in the URL when neither is set): ioredis sends
 * AUTH user password on every connection it opens. */
function redis(): { redisUrl: string; redisUsername: string; redisPassword: string } {
  const raw = secret('REDIS_URL', 'redis://127.0.0.1:6380');
  let u: URL;
  try {
    u = new URL(raw.includes('://') ? raw : `redis://${raw}`);
  } catch {
    throw new Error('REDIS_URL: not a redis:// URL');
  }
  const username = decodeURIComponent(u.username);
  const urlPassword = decodeURIComponent(u.password);
  u.username = '';
  u.password = '';
  return { redisUrl: u.toString(), redisUsername: username, redisPassword: secret('REDIS_PASSWORD', '') || urlPassword };
}

export function loadConfig(): Config {
  const addr = str('GATEWAY_ADDR', '0.0.0.0:8080');
  const i = addr.lastIndexOf(':');
  const alg = str('JWT_ALG', 'HS256');
  if (alg !== 'HS256' && alg !== 'ES256') throw new Error('JWT_ALG: HS256 or ES256');
  const jwtSecret = secret('JWT_SECRET', '');
  if (alg === 'HS256' && Buffer.byteLength(jwtSecret) < 32)
    throw new Error('JWT_SECRET: at least 32 bytes with HS256');
  const accessMs = duration('ACCESS_TOKEN_TTL', '15m');
  return {
    addr,
    host: addr.slice(0, i).replace(/^\[|\]$/g, '') || '0.0.0.0',
    port: Number(addr.slice(i + 1)),
    ...redis(),
    redisPrefix: process.env.REDIS_PREFIX ?? 'gw:',
    upstream: {
      order: str('ORDER_ADDR', '127.0.0.1:50051'),
      product: str('PRODUCT_ADDR', '127.0.0.1:50052'),
      user: str('USER_ADDR', '127.0.0.1:50053'),
    },
    jwtAlg: alg,
    jwtSecret,
    jwtPrivateKeyFile: str('JWT_PRIVATE_KEY_FILE', ''),
    jwtPublicKeyFile: str('JWT_PUBLIC_KEY_FILE', ''),
    jwtIssuer: str('JWT_ISSUER', 'shop-gateway'),
    jwtAudience: str('JWT_AUDIENCE', 'shop-api'),
    accessTtlS: Math.floor(accessMs / 1000),
    refreshTtlMs: duration('REFRESH_TOKEN_TTL', '168h'),
    upstreamTimeoutMs: duration('UPSTREAM_TIMEOUT', '2s'),
    bodyLimit: int('BODY_LIMIT', 65536),
    loginIpLimit: int('LOGIN_RATE_IP', 10),
    loginAccountLimit: int('LOGIN_RATE_ACCOUNT', 5),
    registerIpLimit: int('REGISTER_RATE_IP', 10),
    registerAccountLimit: int('REGISTER_RATE_ACCOUNT', 3),
    authWindowMs: duration('AUTH_RATE_WINDOW', '1m'),
    userRequestLimit: int('USER_RATE_LIMIT', 600),
    userWindowMs: duration('USER_RATE_WINDOW', '1m'),
    grpcTls: grpcTls(),
  };
}
